//! What the proxy tells the boot-status table: who was answered, with
//! which file, and which PXE clients were deliberately not.

use crate::dhcp::{Answered, Reason, Reply};
use crate::status::{BootEvent, Name, StatusSink};
use crate::wire::dhcp::Packet;

/// A reply sent (or queued): whom it answered (as the policy read the
/// request), `reply` and its bytes as written.
pub fn post_reply(sink: &StatusSink, answered: &Answered<'_>, reply: &Reply, written: &[u8]) {
    if !sink.is_on() {
        return;
    }
    let Ok(mac) = <[u8; 6]>::try_from(answered.mac.get(..6).unwrap_or(&[])) else {
        return;
    };
    let file = written.get(108..236).unwrap_or(&[]);
    let file = file.split(|&b| b == 0).next().unwrap_or(&[]);
    let ciaddr = answered.ciaddr;
    sink.post(BootEvent::Proxy {
        mac,
        ip: (!ciaddr.is_unspecified()).then_some(ciaddr),
        arch: reply.arch,
        kind: reply.kind,
        vendor_class: Name::new(answered.vendor_class.unwrap_or(&[])),
        file: Name::new(file),
    });
}

/// A PXE client not answered on purpose (an ignored MAC, no boot entry
/// for its architecture, ...): what `rackboot status` should show for it.
/// Datagrams that are not PXE requests at all are not posted.
pub fn post_silence(sink: &StatusSink, request: &[u8], reason: Reason) {
    let about_the_client = matches!(
        reason,
        Reason::IgnoredMac
            | Reason::NoBootEntry
            | Reason::UnknownArch
            | Reason::NoArch
            | Reason::UnknownBootItem
            | Reason::ReplyTooLarge
    );
    if !sink.is_on() || !about_the_client {
        return;
    }
    // A silence carries no reading of the request: its MAC, in place.
    let mac = Packet::new_checked(request)
        .ok()
        .and_then(|packet| <[u8; 6]>::try_from(packet.chaddr().get(..6)?).ok());
    if let Some(mac) = mac {
        sink.post(BootEvent::ProxySilence { mac, reason });
    }
}
