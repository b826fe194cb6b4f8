//! The admin API's recordings and playbacks: file names checked (nothing outside the
//! configured directories), the recording's file created, the played file read and checked
//! (Ogg Opus, 20 ms frames, under the size limit); then the channel takes over.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::error::{ApiError, HttpError};
use crate::ids::ChannelId;
use crate::messages::{AdminMix, AdminPlay, AdminRecord};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileBody {
    file: Option<String>,
}

fn body(bytes: &[u8]) -> Result<FileBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(FileBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"file\": \"name.ogg\"}}: {e}"
        ))
    })
}

/// A file name inside a configured directory: letters, digits, `.`, `_`, `-`, ending in
/// `.ogg` or `.opus`; no path, no hidden file.
pub fn check_file_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.')
        && !name.contains("..")
        && (name.ends_with(".ogg") || name.ends_with(".opus"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "'{name}' is not a file name this API takes: 1-128 letters, digits, '.', '_' or \
             '-', ending in .ogg or .opus (no directories)"
        )))
    }
}

fn channel_handle(
    state: &AppState,
    id: &ChannelId,
) -> Result<crate::messages::ChannelHandle, ApiError> {
    state
        .channels
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no channel '{id}'")))
}

fn gone(id: &ChannelId) -> ApiError {
    ApiError::not_found(format!("channel '{id}' has ended"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixBody {
    policy: crate::protocol::MixPolicy,
}

/// `POST /api/channels/{id}/mix`: sets the channel's mix policy, announced like a moderator's.
pub async fn mix(path: &str, bytes: &[u8], state: &AppState) -> Result<HttpResponse, HttpError> {
    let id = ChannelId::parse(path).map_err(ApiError::from)?;
    let channel = channel_handle(state, &id)?;
    let body: MixBody = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"policy\": \"forward\" | \"mix\" | \"auto\"}}: {e}"
        ))
    })?;
    let mixing = channel
        .send(AdminMix(body.policy))
        .await
        .map_err(|_| gone(&id))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "policy": body.policy, "mixing": mixing })))
}

/// `POST /api/channels/{id}/record`: records the channel's mix to `file` (default
/// `<channel>-<unix ms>.ogg`) in `media.recordings_dir`.
pub async fn record(path: &str, bytes: &[u8], state: &AppState) -> Result<HttpResponse, HttpError> {
    let id = ChannelId::parse(path).map_err(ApiError::from)?;
    let channel = channel_handle(state, &id)?;
    let name = match body(bytes)?.file {
        Some(name) => name,
        None => format!(
            "{}-{}.ogg",
            id.as_str().replace(':', "_"),
            crate::clock::now_unix_ms()
        ),
    };
    check_file_name(&name)?;
    let dir = state.config.media.recordings_dir.clone();
    let path = dir.join(&name);
    let file = web::block(move || {
        std::fs::create_dir_all(&dir)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
    })
    .await
    .map_err(|_| ApiError::internal("the file could not be created"))?
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ApiError::conflict(format!(
            "a recording named '{name}' exists already; name another file"
        )),
        _ => {
            tracing::warn!(file = %name, error = %e, "cannot create a recording");
            ApiError::internal(format!(
                "the recording '{name}' could not be created in media.recordings_dir (see the \
                 server's log)"
            ))
        }
    })?;
    let started = channel
        .send(AdminRecord::Start {
            name: name.clone(),
            file,
        })
        .await
        .map_err(|_| gone(&id))?;
    if started.is_err() {
        // Nothing was written to it: the name is free again.
        let _ = std::fs::remove_file(state.config.media.recordings_dir.join(&name));
    }
    Ok(HttpResponse::Ok().json(started?))
}

/// `POST /api/channels/{id}/record/stop`.
pub async fn stop_recording(
    path: &str,
    _body: &[u8],
    state: &AppState,
) -> Result<HttpResponse, HttpError> {
    ask(path, state, AdminRecord::Stop).await
}

/// Sends `msg` to the channel at `path` and answers with its reply.
async fn ask<M>(path: &str, state: &AppState, msg: M) -> Result<HttpResponse, HttpError>
where
    M: crate::messages::ToChannel + actix::Message<Result = Result<serde_json::Value, ApiError>>,
{
    let id = ChannelId::parse(path).map_err(ApiError::from)?;
    let channel = channel_handle(state, &id)?;
    let answer = channel.send(msg).await.map_err(|_| gone(&id))??;
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /api/channels/{id}/play`: plays `file` from `media.playback_dir` into the channel.
pub async fn play(path: &str, bytes: &[u8], state: &AppState) -> Result<HttpResponse, HttpError> {
    let id = ChannelId::parse(path).map_err(ApiError::from)?;
    let channel = channel_handle(state, &id)?;
    let name = body(bytes)?
        .file
        .ok_or_else(|| ApiError::bad_request("name the file to play: {\"file\": \"name.ogg\"}"))?;
    check_file_name(&name)?;
    let packets = load(state, &name).await?;
    let started = channel
        .send(AdminPlay::Start { name, packets })
        .await
        .map_err(|_| gone(&id))??;
    Ok(HttpResponse::Ok().json(started))
}

/// `POST /api/channels/{id}/play/stop`.
pub async fn stop_playing(
    path: &str,
    _body: &[u8],
    state: &AppState,
) -> Result<HttpResponse, HttpError> {
    ask(path, state, AdminPlay::Stop).await
}

/// Reads and checks a file to play: its Opus packets, shared.
async fn load(state: &AppState, name: &str) -> Result<Arc<[Arc<[u8]>]>, ApiError> {
    let max = state.config.media.max_playback_bytes;
    let path = state.config.media.playback_dir.join(name);
    let read = web::block(move || -> std::io::Result<Option<Vec<u8>>> {
        let len = std::fs::metadata(&path)?.len();
        if len > max {
            return Ok(None);
        }
        std::fs::read(&path).map(Some)
    })
    .await
    .map_err(|_| ApiError::internal("the file could not be read"))?;
    let data = match read {
        Ok(Some(data)) => data,
        Ok(None) => {
            return Err(ApiError::bad_request(format!(
                "'{name}' is larger than media.max_playback_bytes ({max})"
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "no file '{name}' in media.playback_dir"
            )))
        }
        Err(e) => {
            tracing::warn!(file = %name, error = %e, "cannot read a file to play");
            return Err(ApiError::internal(format!(
                "'{name}' could not be read (see the server's log)"
            )));
        }
    };
    let ogg = amphi_core::mix::ogg::read_ogg_opus(&data)
        .map_err(|e| ApiError::bad_request(format!("'{name}' cannot be played: {e}")))?;
    if let Some((index, (_, samples))) = ogg
        .packets
        .iter()
        .enumerate()
        .find(|(_, (_, samples))| *samples != 960)
    {
        return Err(ApiError::bad_request(format!(
            "'{name}': packet {index} lasts {} ms; only 20 ms frames can be played \
             (re-encode with opusenc --framesize 20)",
            f64::from(*samples) / 48.0
        )));
    }
    Ok(ogg
        .packets
        .into_iter()
        .map(|(p, _)| Arc::<[u8]>::from(p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::check_file_name;

    #[test]
    fn only_plain_names_in_the_directory_are_taken() {
        for good in ["a.ogg", "room-1_2026.opus", "x.y.ogg"] {
            assert!(check_file_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc/passwd.ogg",
            "a/b.ogg",
            ".hidden.ogg",
            "a..b.ogg",
            "a.wav",
            "a b.ogg",
            "/abs.ogg",
            "a\\b.ogg",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }
}
