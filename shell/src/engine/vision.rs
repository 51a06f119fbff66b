//! Images to vision-capable models (issue 17 item 5). A model configured with `vision` gets the
//! images the user attached since the conversation's last reply — `file_upload` messages that
//! name a file this server stores (`POST {P}/upload`), uploaded by that same user, of a type both
//! vision APIs take and at most `MAX_VISION_IMAGE_BYTES` (core's rule, `vision_image`) — as
//! image parts of the message that asks about them (the current one), at most
//! `MAX_VISION_IMAGES` of the newest. Other models, other files and anything that cannot be read
//! keep today's behaviour: the model sees the text only.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chatbox_core::upload::{is_file_id, is_own_file_url, vision_image, MAX_VISION_IMAGES};
use futures_util::StreamExt;

use super::hub::Engine;
use super::llm::{ChatMessage, ImagePart, Role};
use super::replies::Model;
use super::store::StoredMessage;

/// Adds the images `user` attached since the last reply in `stored` to the last user line of
/// `messages`, when `model` takes images.
pub async fn attach(
    engine: &Engine,
    model: &Model,
    user: &str,
    stored: &[Arc<StoredMessage>],
    messages: &mut [ChatMessage],
) {
    if !model.vision {
        return;
    }
    let Some(files) = engine.files.get() else { return };
    let prefix = &engine.config.server.path_prefix;
    let mut wanted: Vec<&StoredMessage> = stored
        .iter()
        .map(Arc::as_ref)
        .rev()
        .take_while(|m| m.sender != "ai")
        .filter(|m| m.sender == "user" && is_file_id(&m.file_id))
        .filter(|m| is_own_file_url(prefix, &m.file_url))
        .take(MAX_VISION_IMAGES)
        .collect();
    wanted.reverse();
    let mut images = Vec::new();
    for message in wanted {
        let meta = match files.meta(&message.file_id).await {
            Ok(Some(meta)) => meta,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(file_id = %message.file_id, %error, "image for the model unreadable");
                continue;
            }
        };
        // A frame may name any id: only the user's own uploads are sent.
        if meta.owner != user || !vision_image(&meta.content_type, meta.size) {
            continue;
        }
        match read(files.as_ref(), &message.file_id, meta.size).await {
            Some(data) => images.push(ImagePart { media_type: meta.content_type, data }),
            None => tracing::warn!(file_id = %message.file_id, "image for the model unreadable"),
        }
    }
    if let Some(line) = messages.iter_mut().rev().find(|m| m.role == Role::User) {
        line.images = images;
    }
}

/// The file's bytes, `None` on a failure or when it is not `size` bytes.
async fn read(files: &dyn super::files::FileStore, id: &str, size: u64) -> Option<Bytes> {
    let mut stream = files.open(id).await.ok()?;
    let mut data = BytesMut::with_capacity(usize::try_from(size).ok()?);
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.ok()?);
        if data.len() as u64 > size {
            return None;
        }
    }
    (data.len() as u64 == size).then(|| data.freeze())
}
