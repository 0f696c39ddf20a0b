//! HTTP callbacks (`auth.on_publish`, `on_play`, `on_done`), as nginx-rtmp's: a form-encoded
//! POST per publish or play; a 2xx answer allows it. Only the connection that asks waits
//! for the answer (its reader pauses); a core has at most `max_hooks_in_flight` callbacks
//! out at once and refuses past that, so a slow or dead hook service cannot pile up work.

use std::net::IpAddr;

use super::Core;
use crate::auth::Refusal;
use crate::relay::locator::Locator;

/// What a callback tells the service.
pub(crate) struct Call<'a> {
    /// `publish`, `play`, `publish_done` or `play_done`.
    pub(crate) call: &'static str,
    /// The peer's address.
    pub(crate) addr: IpAddr,
    /// The app.
    pub(crate) app: &'a str,
    /// The stream name.
    pub(crate) name: &'a str,
    /// The URL's query string, if any.
    pub(crate) query: Option<&'a str>,
    /// `rtmp`, `http_flv` or `ws_flv`.
    pub(crate) proto: &'static str,
}

impl Call<'_> {
    fn form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("call".to_owned(), self.call.to_owned()),
            ("addr".to_owned(), self.addr.to_string()),
            ("app".to_owned(), self.app.to_owned()),
            ("name".to_owned(), self.name.to_owned()),
            (
                "query".to_owned(),
                self.query.unwrap_or_default().to_owned(),
            ),
            ("proto".to_owned(), self.proto.to_owned()),
        ];
        // The URL's own parameters too, as nginx-rtmp passes them (not over ours).
        for kv in self
            .query
            .unwrap_or_default()
            .split('&')
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if !form.iter().any(|(f, _)| f == k) {
                form.push((k.to_owned(), v.to_owned()));
            }
        }
        form
    }
}

/// Counts a callback in flight on the core while it lives.
struct InFlight<'a>(&'a Core);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.hooks_in_flight.set(self.0.hooks_in_flight.get() - 1);
    }
}

/// Asks `on_publish` (for `publish`) or `on_play` (for `play`), when configured.
pub(crate) async fn allow(core: &Core, call: Call<'_>) -> Result<(), Refusal> {
    let cfg = core.config();
    let url = match call.call {
        "publish" => cfg.auth.on_publish.as_deref(),
        _ => cfg.auth.on_play.as_deref(),
    };
    let Some(url) = url else {
        return Ok(());
    };
    let Ok(hook) = Locator::parse(url) else {
        return Err(Refusal::Hook(format!("{url} (not an http:// URL)")));
    };
    if core.hooks_in_flight.get() >= cfg.auth.max_hooks_in_flight {
        return Err(Refusal::Hook(format!("{url}: hook service busy")));
    }
    core.hooks_in_flight.set(core.hooks_in_flight.get() + 1);
    let _count = InFlight(core);
    let form = call.form();
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match hook
        .post_form(core.io, &fields, cfg.auth.hook_timeout)
        .await
    {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(Refusal::Hook(format!("{url}: status {status}"))),
        Err(e) => Err(Refusal::Hook(format!("{url}: {e}"))),
    }
}

/// Tells `on_done` that a publish or play ended (`publish_done` / `play_done`); nobody
/// waits for the answer. Past `max_hooks_in_flight` the notice is dropped, with a log line.
pub(crate) fn done(core: &std::rc::Rc<Core>, call: Call<'_>) {
    let cfg = core.config();
    let Some(url) = cfg.auth.on_done.clone() else {
        return;
    };
    let Ok(hook) = Locator::parse(&url) else {
        return;
    };
    if core.hooks_in_flight.get() >= cfg.auth.max_hooks_in_flight {
        tracing::warn!(hook = %url, "on_done dropped: hook service busy");
        return;
    }
    core.hooks_in_flight.set(core.hooks_in_flight.get() + 1);
    let form = call.form();
    let core = core.clone();
    super::runtime::spawn(async move {
        let _count = InFlight(&core);
        let fields: Vec<(&str, &str)> =
            form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let timeout = core.config().auth.hook_timeout;
        if let Err(e) = hook.post_form(core.io, &fields, timeout).await {
            tracing::warn!(hook = %url, "on_done: {e}");
        }
    });
}
