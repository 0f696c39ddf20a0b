// Opens ringcast's player page in headless Chromium, with the CDN request for mpegts.js
// answered from the local copy (the page's SRI hash must match it), and checks that the
// video plays over HTTP-FLV and then, after the page's toggle, over WebSocket-FLV.
//
// Usage: node play.mjs PAGE_URL SCRIPT_URL MPEGTS_JS OUT_DIR
// Prints one JSON line per transport; exits non-zero on any failure.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [pageUrl, scriptUrl, mpegtsPath, outDir] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "ringcast-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
  viewport: { width: 1000, height: 640 },
});
let failed = false;
try {
  const page = await context.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
  await page.route(scriptUrl, (route) =>
    route.fulfill({
      path: mpegtsPath,
      contentType: "application/javascript",
      headers: { "access-control-allow-origin": "*" },
    })
  );
  await page.goto(pageUrl);

  const state = () =>
    page.evaluate(() => {
      const v = document.getElementById("video");
      const q = v.getVideoPlaybackQuality();
      return {
        transport: window.ringcast.transport,
        errors: window.ringcast.errors,
        time: v.currentTime,
        frames: q.totalVideoFrames,
        dropped: q.droppedVideoFrames,
        width: v.videoWidth,
        height: v.videoHeight,
        codec: window.ringcast.mediaInfo && window.ringcast.mediaInfo.videoCodec,
        overlay: document.getElementById("overlay").textContent,
      };
    });

  async function plays(transport) {
    const started = Date.now();
    // Playing on this transport: frames decoded, time moving.
    await page.waitForFunction(
      (t) => {
        const v = document.getElementById("video");
        return window.ringcast.transport === t && v.currentTime > 0 &&
          v.getVideoPlaybackQuality().totalVideoFrames > 0;
      },
      transport,
      { timeout: 10000, polling: 100 }
    );
    const base = await state();
    await page.waitForFunction(
      ([t0, f0]) => {
        const v = document.getElementById("video");
        return v.currentTime > t0 + 2 && v.getVideoPlaybackQuality().totalVideoFrames > f0 + 50 &&
          window.ringcast.errors.length === 0;
      },
      [base.time, base.frames],
      { timeout: 10000, polling: 100 }
    ).catch(() => {});
    const end = await state();
    const ok = end.time > base.time + 2 && end.frames > base.frames + 50 &&
      end.width === 640 && end.height === 360 && end.errors.length === 0;
    await page.screenshot({ path: join(outDir, transport + ".png") });
    console.log(JSON.stringify({
      transport, ok, seconds: (Date.now() - started) / 1000,
      advanced: end.time - base.time, decoded: end.frames - base.frames,
      width: end.width, height: end.height, codec: end.codec, errors: end.errors,
      overlay: end.overlay,
    }));
    if (!ok) {
      failed = true;
      console.log(logs.join("\n"));
    }
  }

  await plays("http-flv");
  await page.click("#mode");
  await plays("ws-flv");
} catch (e) {
  failed = true;
  console.log("error: " + e);
} finally {
  await context.close();
}
process.exit(failed ? 1 : 0);
