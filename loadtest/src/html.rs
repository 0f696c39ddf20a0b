//! The load report people look at (`--report FILE.html`, `loadtest report`): one
//! self-contained HTML page, SVG plots inline (drawn with `plotters`), for one run or for
//! several side by side (`scripts/compare` renders every cell of its table in one page).
//!
//! Per run: latency p50/p99/max per second, players connected per second, delivered Gbit/s,
//! the time-to-first-frame distribution, and the summary table.

use plotters::prelude::*;

use crate::report::{Percentiles, Report, Second};

/// Plot size, px.
const W: u32 = 560;
const H: u32 = 240;

/// One line of a plot: its label, colour and points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One SVG plot of `series` over x in `[0, x_max]`.
fn plot(title: &str, x_desc: &str, y_desc: &str, x_max: f64, series: &[Series<'_>]) -> String {
    let y_max = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(52)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (label, colour, pts) in series {
                let colour = *colour;
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))?
                    .label(*label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
            if series.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(180, 180, 180))
                    .position(SeriesLabelPosition::UpperLeft)
                    .draw()?;
            }
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            return format!("<p>plot failed: {}</p>", escape(&e.to_string()));
        }
    }
    svg
}

fn points(timeline: &[Second], f: impl Fn(&Second) -> Option<f64>) -> Vec<(f64, f64)> {
    timeline
        .iter()
        .filter_map(|s| f(s).map(|v| (s.t_s, v)))
        .collect()
}

const RED: RGBColor = RGBColor(214, 39, 40);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const GREY: RGBColor = RGBColor(127, 127, 127);
const GREEN: RGBColor = RGBColor(44, 160, 44);

/// The plots of one run, in page order.
pub fn plots(r: &Report) -> Vec<String> {
    let t = &r.timeline;
    let x_max = t.last().map_or(r.duration_s, |s| s.t_s.max(r.duration_s));
    let ttff_max = r.ttff_cdf_ms.last().map_or(1.0, |p| p.0);
    vec![
        plot(
            "latency per second",
            "seconds",
            "ms",
            x_max,
            &[
                ("max", GREY, points(t, |s| s.latency_max_ms)),
                ("p99", RED, points(t, |s| s.latency_p99_ms)),
                ("p50", BLUE, points(t, |s| s.latency_p50_ms)),
            ],
        ),
        plot(
            "players connected",
            "seconds",
            "players",
            x_max,
            &[
                ("connected", BLUE, points(t, |s| Some(s.connected as f64))),
                ("failed", RED, points(t, |s| Some(s.failed as f64))),
            ],
        ),
        plot(
            "delivered",
            "seconds",
            "Gbit/s",
            x_max,
            &[("Gbit/s", GREEN, points(t, |s| Some(s.gbit_per_s)))],
        ),
        plot(
            "time to first frame (share of players at or under)",
            "ms",
            "fraction",
            ttff_max,
            &[("TTFF", BLUE, r.ttff_cdf_ms.clone())],
        ),
    ]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `p50 / p99 / max ms` of a distribution.
fn p50_p99_max(p: &Percentiles) -> String {
    format!("{} / {} / {} ms", opt(p.p50), opt(p.p99), opt(p.max))
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

/// The summary table of one run.
fn summary(r: &Report) -> String {
    let p = &r.players;
    let rows = [
        (
            "players",
            format!(
                "{} of {} connected, {} failed",
                p.connected, r.players_requested, p.failed
            ),
        ),
        (
            "delivered",
            format!("{:.1} Mbit/s over {:.1} s", r.mbit_per_s, r.duration_s),
        ),
        ("latency p50 / p99 / max", p50_p99_max(&r.latency_ms)),
        ("TTFF p50 / p99 / max", p50_p99_max(&r.ttff_ms)),
        (
            "connect p50 / p99",
            format!("{} / {} ms", opt(r.connect_ms.p50), opt(r.connect_ms.p99)),
        ),
        (
            "integrity",
            format!("{} errors, {} stalls", r.integrity_errors, r.stalls),
        ),
        (
            "harness",
            format!(
                "{:.1} CPU s, {} threads ({}), loop lag p99 {:.1} ms{}",
                r.harness.cpu_s,
                r.harness.threads,
                escape(&r.harness.io),
                r.harness.p99_loop_lag_ms,
                if r.harness.lagging {
                    " — lagging: figures include its own delay"
                } else {
                    ""
                }
            ),
        ),
    ];
    let mut s = String::from("<table>");
    for (k, v) in rows {
        s.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", escape(&v)));
    }
    s.push_str("</table>");
    s
}

/// A self-contained page with `runs` (title, report) side by side, one column each.
pub fn page(heading: &str, runs: &[(String, Report)]) -> String {
    let mut body = String::new();
    for (title, r) in runs {
        body.push_str("<section>");
        body.push_str(&format!(
            "<h2>{}</h2><p class=url>{}</p>",
            escape(title),
            escape(&r.url)
        ));
        body.push_str(&summary(r));
        for svg in plots(r) {
            body.push_str("<figure>");
            body.push_str(&svg);
            body.push_str("</figure>");
        }
        body.push_str("</section>");
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=utf-8><title>{h}</title><style>\
         body{{font:14px sans-serif;margin:16px;color:#222}}\
         main{{display:flex;gap:24px;overflow-x:auto;align-items:flex-start}}\
         section{{flex:0 0 {W}px}} figure{{margin:8px 0}} h2{{font-size:16px;margin:4px 0}}\
         .url{{color:#666;margin:0 0 8px;word-break:break-all}}\
         table{{border-collapse:collapse;margin-bottom:8px}} th,td{{text-align:left;padding:2px 8px 2px 0;vertical-align:top}}\
         th{{font-weight:600;white-space:nowrap}}</style></head>\
         <body><h1>{h}</h1><main>{body}</main></body></html>\n",
        h = escape(heading),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let json = r#"{"url":"rtmp://127.0.0.1:1935/live/x","players_requested":2,"duration_s":3.0,
          "bitrate_bps":1000000,"players":{"connected":2,"failed":0,"by_end":{"clean":2,"refused":0,"reset":0,"timed_out":0,"error":0}},
          "connect_ms":{"count":2,"p50":0.3,"p90":0.3,"p99":0.4,"p999":0.4,"max":0.4},
          "ttff_ms":{"count":2,"p50":1.0,"p90":2.0,"p99":2.0,"p999":2.0,"max":2.0},
          "latency_ms":{"count":10,"p50":20.0,"p90":40.0,"p99":49.0,"p999":50.0,"max":50.0},
          "stalls":0,"integrity_errors":0,"gaps":0,"corrupt":0,"out_of_order":0,"frames":10,"bytes":1000,"mbit_per_s":1.0,
          "harness":{"cpu_s":0.1,"threads":1,"io":"epoll","lagging":false,"max_loop_lag_ms":1.0,"p99_loop_lag_ms":1.0,"verify_every":1},
          "timeline":[{"t_s":1.0,"connected":2,"failed":0,"gbit_per_s":0.001,"latency_p50_ms":20.0,"latency_p99_ms":49.0,"latency_max_ms":50.0},
                      {"t_s":2.0,"connected":2,"failed":0,"gbit_per_s":0.002,"latency_p50_ms":null,"latency_p99_ms":null,"latency_max_ms":null}],
          "ttff_cdf_ms":[[1.0,0.5],[2.0,1.0]]}"#;
        serde_json::from_str(json).expect("a report")
    }

    #[test]
    fn a_page_has_four_plots_per_run_and_the_summary() {
        let r = report();
        let html = page("two runs", &[("a <1>".into(), r.clone()), ("b".into(), r)]);
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 8, "four plots per run");
        assert!(html.contains("a &lt;1&gt;"), "titles are escaped");
        assert!(html.contains("20.0 / 49.0 / 50.0 ms"), "the latency row");
        assert!(html.contains("latency per second"));
        // The plot of a line has a path or polyline.
        assert!(html.contains("<polyline") || html.contains("<path"));
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    }
}
