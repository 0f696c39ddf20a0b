//! The pages an operator opens first: `GET /` lists the live streams, `GET /APP/STREAM`
//! plays one in the browser with mpegts.js over HTTP-FLV (or WebSocket-FLV). The page is
//! embedded in the binary; the player script is loaded from `player_script` (a pinned
//! version on a public CDN by default, checked against `player_script_integrity`), so the
//! binary carries no third-party code.

use crate::config::Config;

/// The player page template.
const PLAYER: &str = include_str!("player.html");

/// `s` with the characters HTML gives meaning to escaped, for text and attribute values.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page that plays stream `key` (`APP/STREAM`).
pub(crate) fn player(config: &Config, key: &str) -> String {
    let integrity = if config.player_script_integrity.is_empty() {
        String::new()
    } else {
        format!(
            " integrity=\"{}\"",
            html_escape(&config.player_script_integrity)
        )
    };
    PLAYER
        .replace("{{TITLE}}", &html_escape(key))
        .replace("{{STREAM}}", &html_escape(key))
        .replace("{{SCRIPT}}", &html_escape(&config.player_script))
        .replace("{{INTEGRITY}}", &integrity)
}

/// The list of live streams, each linking to its player page and its FLV URL.
pub(crate) fn index(streams: &[String]) -> String {
    let mut rows = String::new();
    for key in streams {
        let k = html_escape(key);
        rows.push_str(&format!(
            "<li><a href=\"/{k}\">{k}</a> · <a href=\"/{k}.flv\">{k}.flv</a></li>\n"
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>nothing is being published</li>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>ringcast</title></head>\n<body style=\"font: 14px system-ui, sans-serif\">\n\
         <h1>ringcast: live streams</h1>\n<ul>\n{rows}</ul>\n\
         <p>Play with <code>rtmp://HOST/APP/STREAM</code>, \
         <code>http://HOST/APP/STREAM.flv</code> or <code>ws://HOST/APP/STREAM.flv</code>.</p>\n\
         </body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_the_script_is_the_configured_one() {
        let cfg = Config::default();
        let page = player(&cfg, "live/<b>\"x");
        assert!(page.contains("data-stream=\"live/&lt;b&gt;&quot;x\""));
        assert!(!page.contains("<b>\"x"));
        assert!(page.contains(&format!("src=\"{}\"", cfg.player_script)));
        assert!(page.contains(&format!("integrity=\"{}\"", cfg.player_script_integrity)));
        let list = index(&["live/cam".into()]);
        assert!(list.contains("<a href=\"/live/cam\">live/cam</a>"));
        assert!(list.contains("/live/cam.flv"));
    }
}
