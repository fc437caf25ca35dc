//! `/claim`: `GET` and `POST` claim the client's address for a nickname;
//! `HEAD` answers what `GET` would (same checks, same header fields) and
//! claims nothing. The answer's form follows `Accept`.

use crate::error::ApiError;
use crate::negotiate::{self, Format};
use crate::query::encode_component;
use crate::responses::{error_json, error_page, escape_html, html_page, text, with_type};
use crate::{client_addr, App, Body};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use std::net::IpAddr;

/// A 1×1 transparent GIF: the answer to `/claim` from an `<img>`.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// Marks an answer to `HEAD` whose length only a real claim would tell (the
/// JSON carries the commit time): no `Content-Length` is announced for it,
/// as RFC 9110 §9.3.2 allows.
#[derive(Clone, Copy)]
pub struct LengthUnknown;

/// Who got which address, as the answer tells it.
struct Claimed {
    ip: String,
    name: String,
    /// The core's JSON; `None` for a `HEAD`, which commits nothing.
    json: Option<String>,
}

pub async fn claim(
    app: &App,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    nick: Result<String, ApiError>,
    commit: bool,
) -> Response<Body> {
    let format = negotiate::claim_format(headers);
    let result = if commit {
        commit_claim(app, peer, headers, nick).await
    } else {
        check_claim(app, peer, headers, nick)
    };
    let mut r = match result {
        Ok(c) => answer(format, &c),
        Err(e) => error(headers, &e),
    };
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// A claim error in the form the client asked for.
pub fn error(headers: &HeaderMap, e: &ApiError) -> Response<Body> {
    match negotiate::claim_format(headers) {
        Format::Html => error_page(e),
        _ => error_json(e),
    }
}

/// Longest wait for a claim's commit before answering 503. The core fails
/// claims that waited 5 s for their transaction, so this is only reached
/// when a commit itself hangs.
const COMMIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn commit_claim(
    app: &App,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    nick: Result<String, ApiError>,
) -> Result<Claimed, ApiError> {
    let nick = nick?;
    let ip = client_addr::resolve(peer, headers, &app.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .ok_or_else(client_addr::no_address)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The core answers from its own thread after the commit: no runtime
    // thread waits on the disk, and none waits past the deadline.
    app.store_ready()
        .await?
        .claim_with(&ip, &nick, move |r| drop(tx.send(r)))?;
    let unavailable = |why: &str| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).retry_after(1)
    };
    let json = tokio::time::timeout(COMMIT_DEADLINE, rx)
        .await
        .map_err(|_| unavailable("The claim was not committed in time; it may still be."))?
        .map_err(|_| unavailable("The store is closing."))??;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    Ok(Claimed {
        ip: field("ip"),
        name: field("name"),
        json: Some(json),
    })
}

/// The checks a claim would pass (name and address), without claiming.
fn check_claim(
    app: &App,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    nick: Result<String, ApiError>,
) -> Result<Claimed, ApiError> {
    let nick = nick?;
    cti_ffi::validate_nick(&nick)?;
    let ip = client_addr::client_ipv4(peer, headers, &app.config.trusted_proxies)?;
    Ok(Claimed {
        ip: ip.to_string(),
        name: nick,
        json: None,
    })
}

fn answer(format: Format, c: &Claimed) -> Response<Body> {
    match format {
        Format::Json => match &c.json {
            Some(json) => with_type(StatusCode::OK, "application/json", json.clone()),
            None => {
                let mut r = with_type(StatusCode::OK, "application/json", "");
                r.extensions_mut().insert(LengthUnknown);
                r
            }
        },
        Format::Text => text(
            StatusCode::OK,
            format!("The land at {} was claimed for {}.\n", c.ip, c.name),
        ),
        Format::Image => with_type(StatusCode::OK, "image/gif", PIXEL),
        Format::Html => html_page(
            StatusCode::OK,
            "Claimed",
            &format!(
                "The land at {} was claimed for <a href=\"/player?name={}\">{}</a>.",
                escape_html(&c.ip),
                escape_html(&encode_component(&c.name)),
                escape_html(&c.name)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_is_a_gif() {
        assert!(PIXEL.starts_with(b"GIF89a") && PIXEL.ends_with(b";"));
    }

    #[test]
    fn the_page_links_the_nick_to_its_player_page() {
        let c = Claimed {
            ip: "1.2.3.4".into(),
            name: "a+b".into(),
            json: None,
        };
        let r = answer(Format::Html, &c);
        let body = futures_body(r);
        assert!(
            body.contains(
                "The land at 1.2.3.4 was claimed for <a href=\"/player?name=a%2Bb\">a+b</a>."
            ),
            "{body}"
        );
    }

    fn futures_body(r: Response<Body>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
