//! Uploads (WRQ): a shard's write transfers, stored under a temporary
//! name, synced and renamed into place (never over an existing file)
//! before the last ACK.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::{Backend, Endpoint, Kind, ShardCore, UPLOAD_MAX_BLKSIZE, Upload};
use crate::files::ResolveError;
use crate::metrics::{Direction, Refusal};
use crate::reactor::socket::RecvMeta;
use crate::tftp::upload::{DataAction, WriteTransfer};
use crate::tftp::{Negotiated, Outcome};
use crate::wire::tftp::{self as wire, ErrorCode};

impl ShardCore {
    pub(super) fn start_write(
        &mut self,
        io: &mut impl Backend,
        listen_key: usize,
        meta: RecvMeta,
        req: wire::Request<'_>,
        now: Instant,
    ) {
        self.metrics.tftp.request(Direction::Write);
        if !self.shared.settings.allow_upload {
            self.metrics.tftp.refuse(Refusal::UploadsDisabled);
            return self.reply_error(
                io,
                listen_key,
                meta,
                ErrorCode::AccessViolation,
                "Uploads are disabled",
            );
        }
        let (target, name) = match self.shared.cache.root().upload_path(req.filename) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.tftp.refuse(Refusal::UploadRefused);
                let code = if e == ResolveError::Refused {
                    ErrorCode::FileExists
                } else {
                    ErrorCode::AccessViolation
                };
                let msg = if code == ErrorCode::FileExists {
                    "File exists or not allowed"
                } else {
                    "Access violation"
                };
                return self.reply_error(io, listen_key, meta, code, msg);
            }
        };
        let mut limits = self.limits_for(&meta);
        limits.max_blksize = limits.max_blksize.min(UPLOAD_MAX_BLKSIZE);
        let negotiated = Negotiated::for_write(&req.options, &limits);
        let max_upload = self.shared.settings.max_upload;
        if negotiated.tsize.is_some_and(|size| size > max_upload) {
            self.metrics.tftp.refuse(Refusal::UploadTooLarge);
            return self.reply_error(io, listen_key, meta, ErrorCode::DiskFull, "File too large");
        }
        self.upload_seq += 1;
        let temp = target.with_file_name(format!(
            ".{}.rackboot-{}-{}-{}.part",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("upload"),
            std::process::id(),
            self.index,
            self.upload_seq
        ));
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(f) => f,
            Err(_) => {
                return self.reply_error(
                    io,
                    listen_key,
                    meta,
                    ErrorCode::AccessViolation,
                    "Cannot create file",
                );
            }
        };
        if !self.admit(meta.from.ip()) {
            let _ = std::fs::remove_file(&temp);
            return self.reply_error(
                io,
                listen_key,
                meta,
                ErrorCode::NotDefined,
                "Server busy, try again",
            );
        }
        let idle = self.shared.settings.timing.give_up;
        let machine = WriteTransfer::new(negotiated.blksize, max_upload, idle, now);
        let upload = Upload {
            machine,
            file,
            temp: temp.clone(),
            target,
            name,
            bytes: 0,
            negotiated,
            stored: false,
        };
        let Some(key) =
            self.open_transfer(io, listen_key, meta, Kind::Write(Box::new(upload)), now)
        else {
            let _ = std::fs::remove_file(&temp);
            self.release(meta.from.ip());
            return;
        };
        // OACK when options were accepted, else ACK 0, invites DATA 1.
        let n = if negotiated.needs_oack() {
            negotiated.emit_oack(&mut self.scratch).unwrap_or(0)
        } else {
            wire::emit_ack(&mut self.scratch, 0).unwrap_or(0)
        };
        if let Some(Endpoint::Transfer(t)) = self.endpoints.get(key) {
            io.send(t.single(&self.scratch[..n]));
        }
        self.schedule(key, now + idle);
    }

    pub(super) fn on_upload_data(
        &mut self,
        io: &mut impl Backend,
        key: usize,
        block: u16,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(Endpoint::Transfer(t)) = self.endpoints.get_mut(key) else {
            return;
        };
        let Kind::Write(up) = &mut t.kind else { return };
        let (ack, last) = match up.machine.on_data(block, payload.len(), now) {
            DataAction::Store { offset, ack, last } => {
                if up.file.write_all_at(payload, offset).is_err() {
                    self.send_transfer_error(io, key, ErrorCode::DiskFull, "Write failed");
                    return self.finish(io, key, Outcome::TimedOut, now);
                }
                up.bytes = offset + payload.len() as u64;
                (ack, last)
            }
            DataAction::Reack { ack } => (ack, false),
            DataAction::Ignore => return,
            DataAction::TooLarge => {
                self.send_transfer_error(io, key, ErrorCode::DiskFull, "File too large");
                return self.finish(io, key, Outcome::TimedOut, now);
            }
        };
        if last && !up.stored {
            // Store before the final ACK: a client that sees it can rely on
            // the file being in place.
            up.stored = up.file.sync_all().is_ok() && rename_noreplace(&up.temp, &up.target);
            if !up.stored {
                self.send_transfer_error(
                    io,
                    key,
                    ErrorCode::FileExists,
                    "Cannot store the file (exists now?)",
                );
                return self.finish(io, key, Outcome::TimedOut, now);
            }
        }
        let deadline = up.machine.deadline();
        let n = wire::emit_ack(&mut self.scratch, ack).unwrap_or(0);
        io.send(t.single(&self.scratch[..n]));
        if last {
            self.finish(io, key, Outcome::Complete, now);
        } else {
            self.schedule(key, deadline);
        }
    }
}

/// Moves a finished upload into place, never replacing an existing file.
pub(super) fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(from), Ok(to)) = (
        std::ffi::CString::new(from.as_os_str().as_bytes()),
        std::ffi::CString::new(to.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        ) == 0
    }
}
