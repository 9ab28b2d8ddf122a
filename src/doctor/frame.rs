//! The layers below DHCP, TFTP and HTTP: an Ethernet frame (with or
//! without one 802.1Q tag) carrying an unfragmented IPv4 UDP datagram or
//! TCP segment, read with
//! `pnet_packet`'s views. Every length is checked here before a payload is
//! sliced, so a malformed frame is `None`, never a panic.

use std::net::SocketAddrV4;

use pnet_packet::Packet as _;
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{TcpFlags, TcpPacket};
use pnet_packet::udp::UdpPacket;
use pnet_packet::vlan::VlanPacket;

const IPV4_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
/// IPv4 "more fragments" flag, in `get_flags()`'s 3 bits.
const MORE_FRAGMENTS: u8 = 0b001;

/// One UDP datagram taken out of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The Ethernet source address.
    pub src_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

/// One TCP segment taken out of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    /// FIN or RST: the connection ends.
    pub closing: bool,
    /// The payload as captured: shorter than `len` when the capture cut
    /// the frame (a snap length, or a large offloaded segment).
    pub payload: &'a [u8],
    /// The payload's length on the wire, from the IP header.
    pub len: usize,
}

/// Takes the UDP datagram out of an Ethernet frame; `None` for anything
/// else (ARP, IPv6, TCP, fragments, truncated or inconsistent headers).
pub fn udp_datagram(frame: &[u8]) -> Option<Datagram<'_>> {
    let (src_mac, ip, udp_bytes, whole) = ipv4_payload(frame, IpNextHeaderProtocols::Udp)?;
    if !whole {
        return None;
    }
    let udp = UdpPacket::new(udp_bytes)?;
    let udp_len = usize::from(udp.get_length());
    let payload = udp_bytes.get(UDP_HEADER_LEN..udp_len)?;
    Some(Datagram {
        src_mac,
        src: SocketAddrV4::new(ip.get_source(), udp.get_source()),
        dst: SocketAddrV4::new(ip.get_destination(), udp.get_destination()),
        payload,
    })
}

/// Takes the TCP segment out of an Ethernet frame; `None` for anything
/// else, as [`udp_datagram`].
pub fn tcp_segment(frame: &[u8]) -> Option<Segment<'_>> {
    let (src_mac, ip, tcp_bytes, _) = ipv4_payload(frame, IpNextHeaderProtocols::Tcp)?;
    let tcp = TcpPacket::new(tcp_bytes)?;
    let header_len = usize::from(tcp.get_data_offset()) * 4;
    let ip_header_len = usize::from(ip.get_header_length()) * 4;
    let len = usize::from(ip.get_total_length()).checked_sub(ip_header_len + header_len)?;
    if header_len < TcpPacket::minimum_packet_size() {
        return None;
    }
    let payload = tcp_bytes.get(header_len..)?;
    Some(Segment {
        src_mac,
        src: SocketAddrV4::new(ip.get_source(), tcp.get_source()),
        dst: SocketAddrV4::new(ip.get_destination(), tcp.get_destination()),
        seq: tcp.get_sequence(),
        closing: tcp.get_flags() & (TcpFlags::FIN | TcpFlags::RST) != 0,
        payload,
        len,
    })
}

/// The source MAC, the IPv4 header and the bytes it carries (up to its
/// total length, or to the end of a cut frame) of an unfragmented IPv4
/// packet of `protocol`, and whether they are all there.
fn ipv4_payload(
    frame: &[u8],
    protocol: IpNextHeaderProtocol,
) -> Option<([u8; 6], Ipv4Packet<'_>, &[u8], bool)> {
    let ethernet = EthernetPacket::new(frame)?;
    let src_mac = ethernet.get_source().octets();
    let header_len = frame.len() - ethernet.payload().len();
    let mut ethertype = ethernet.get_ethertype();
    let mut ip_at = header_len;
    if ethertype == EtherTypes::Vlan {
        let vlan = VlanPacket::new(frame.get(ip_at..)?)?;
        ethertype = vlan.get_ethertype();
        ip_at += VlanPacket::minimum_packet_size();
    }
    if ethertype != EtherTypes::Ipv4 {
        return None;
    }
    let ip_bytes = frame.get(ip_at..)?;
    let ip = Ipv4Packet::new(ip_bytes)?;
    let ip_header_len = usize::from(ip.get_header_length()) * 4;
    let total_len = usize::from(ip.get_total_length());
    if ip.get_version() != 4
        || ip_header_len < IPV4_MIN_HEADER_LEN
        || total_len < ip_header_len
        || ip.get_next_level_protocol() != protocol
        || ip.get_flags() & MORE_FRAGMENTS != 0
        || ip.get_fragment_offset() != 0
    {
        return None;
    }
    // Ethernet pads short frames: the IP total length says where data ends.
    let whole = total_len <= ip_bytes.len();
    let carried = ip_bytes.get(ip_header_len..total_len.min(ip_bytes.len()))?;
    Some((src_mac, Ipv4Packet::new(ip_bytes)?, carried, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// Builds an Ethernet/IPv4/UDP frame around `payload` with correct lengths
    /// and IPv4 header checksum (UDP checksum 0, "not computed").
    fn build_udp_frame(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Vec<u8> {
        let udp_len = UDP_HEADER_LEN + payload.len();
        let total_len = IPV4_MIN_HEADER_LEN + udp_len;
        let mut frame = Vec::with_capacity(14 + total_len);
        frame.extend_from_slice(&dst_mac);
        frame.extend_from_slice(&src_mac);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; IPV4_MIN_HEADER_LEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let checksum = pnet_packet::util::checksum(&ip, 5);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&src.port().to_be_bytes());
        frame.extend_from_slice(&dst.port().to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        frame
    }

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn round_trips_a_datagram_and_ignores_padding() {
        let mut frame = build_udp_frame(
            MAC,
            [0xff; 6],
            addr("0.0.0.0:68"),
            addr("255.255.255.255:67"),
            b"hello",
        );
        frame.extend_from_slice(&[0; 20]);
        let datagram = udp_datagram(&frame).unwrap();
        assert_eq!(datagram.src_mac, MAC);
        assert_eq!(datagram.src, addr("0.0.0.0:68"));
        assert_eq!(datagram.dst, addr("255.255.255.255:67"));
        assert_eq!(datagram.payload, b"hello");
        let ip = Ipv4Packet::new(&frame[14..]).unwrap();
        assert_eq!(pnet_packet::ipv4::checksum(&ip), ip.get_checksum());
    }

    #[test]
    fn every_truncation_and_bad_length_is_none() {
        let frame = build_udp_frame(MAC, MAC, addr("10.0.0.1:69"), addr("10.0.0.2:1000"), b"x");
        for cut in 0..frame.len() {
            assert_eq!(udp_datagram(&frame[..cut]), None, "cut {cut}");
        }
        for (at, value) in [
            (14, 0x44u8),
            (14, 0x4f),
            (16, 0),
            (16 + 1, 0),
            (23, 6),
            (38, 0xff),
            (39, 7),
        ] {
            let mut bad = frame.clone();
            bad[at] = value;
            if at == 16 {
                bad[17] = 0;
            }
            assert_eq!(udp_datagram(&bad), None, "byte {at} = {value}");
        }
    }

    #[test]
    fn reads_through_a_vlan_tag_and_skips_fragments() {
        let plain = build_udp_frame(MAC, MAC, addr("10.0.0.1:67"), addr("10.0.0.2:68"), b"abc");
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(udp_datagram(&tagged).unwrap().payload, b"abc");

        let mut fragment = plain.clone();
        fragment[14 + 6] = 0x20;
        assert_eq!(udp_datagram(&fragment), None);
    }
}
