//! What the proxy tells the boot-status table: who was answered, with
//! which file, and which PXE clients were deliberately not.

use std::net::Ipv4Addr;

use crate::dhcp::{Reason, Reply};
use crate::status::{BootEvent, Name, StatusSink};
use crate::wire::dhcp::Packet;

/// A reply sent (or queued): `request` as received, `reply` as written.
pub fn post_reply(sink: &StatusSink, request: &[u8], reply: &Reply, written: &[u8]) {
    if !sink.is_on() {
        return;
    }
    let Some((mac, ciaddr, vendor)) = client(request) else {
        return;
    };
    let file = written.get(108..236).unwrap_or(&[]);
    let file = file.split(|&b| b == 0).next().unwrap_or(&[]);
    sink.post(BootEvent::Proxy {
        mac,
        ip: (!ciaddr.is_unspecified()).then_some(ciaddr),
        arch: reply.arch,
        kind: reply.kind,
        vendor_class: Name::new(vendor),
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
    if let Some((mac, _, _)) = client(request) {
        sink.post(BootEvent::ProxySilence { mac, reason });
    }
}

/// The client's MAC, ciaddr and option 60, read in place.
fn client(request: &[u8]) -> Option<([u8; 6], Ipv4Addr, &[u8])> {
    let packet = Packet::new_checked(request).ok()?;
    let mac: [u8; 6] = packet.chaddr().get(..6)?.try_into().ok()?;
    Some((mac, packet.ciaddr(), packet.option(60).unwrap_or(&[])))
}
