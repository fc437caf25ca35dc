//! The edge's admin actions on the operator listener (loopback only, see
//! `cti_server::operator`), each answered in JSON:
//!
//! - `POST /admin/core` with a library path as the body (empty: the
//!   `--core-file`): swaps the core in place;
//! - `POST /admin/reexec`: starts the edge binary again on the same sockets
//!   and hands over; answers once the new process serves.

use crate::upgrade::Upgrades;
use bytes::Bytes;
use cti_server::operator::{self, Admin};
use hyper::StatusCode;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// The admin handler for the operator listener.
pub fn handler(upgrades: Arc<Upgrades>) -> Admin {
    Arc::new(move |action: String, body: Bytes| {
        let upgrades = upgrades.clone();
        Box::pin(async move {
            match action.as_str() {
                "core" => core(&upgrades, &body).await,
                "reexec" => reexec(&upgrades).await,
                _ => operator::error(
                    StatusCode::NOT_FOUND,
                    "no such admin action (there are core and reexec)",
                ),
            }
        })
    })
}

async fn core(upgrades: &Upgrades, body: &[u8]) -> (StatusCode, String) {
    let Ok(text) = std::str::from_utf8(body) else {
        return operator::error(StatusCode::BAD_REQUEST, "the path is not UTF-8");
    };
    let path = Some(text.trim())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let result = upgrades.swap(path).await;
    let game = upgrades.edge.app.game();
    let serving = json!({
        "version": game.core().version(),
        "path": game.core_path().map(|p| p.display().to_string()),
        "swaps": game.swaps(),
        "files_kept_loaded": cti_ffi::Api::loaded_count(),
    });
    match result {
        Ok(swapped) => {
            let mut answer = json!({
                "result": "swapped",
                "paused_ms": swapped.paused.as_secs_f64() * 1000.0,
            });
            merge(&mut answer, serving);
            (StatusCode::OK, answer.to_string())
        }
        Err(error) => {
            let mut answer = json!({ "result": "refused", "error": error });
            merge(&mut answer, serving);
            (StatusCode::UNPROCESSABLE_ENTITY, answer.to_string())
        }
    }
}

async fn reexec(upgrades: &Upgrades) -> (StatusCode, String) {
    match upgrades.reexec().await {
        Ok(handed) => {
            let answer = json!({
                "result": "reexeced",
                "pid": handed.pid,
                "paused_ms": handed.paused.as_secs_f64() * 1000.0,
            });
            (StatusCode::OK, answer.to_string())
        }
        Err(error) => {
            let answer = json!({ "result": "failed", "error": error, "pid": std::process::id() });
            (StatusCode::INTERNAL_SERVER_ERROR, answer.to_string())
        }
    }
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}
