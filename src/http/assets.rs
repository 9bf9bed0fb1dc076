//! The status page's files, compiled into the binary (no build step, nothing fetched at run
//! time: no CDN, no web fonts).

/// `GET /`.
pub(super) const INDEX_HTML: &str = include_str!("assets/index.html");
/// `GET /assets/app.css`.
pub(super) const APP_CSS: &str = include_str!("assets/app.css");
/// `GET /assets/app.js`.
pub(super) const APP_JS: &str = include_str!("assets/app.js");
