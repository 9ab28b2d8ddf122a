//! RFC 1350's netascii mode: a file is sent as NVT ASCII (RFC 764), every
//! LF as CR LF and every CR as CR NUL. A client decoding netascii (tftp-hpa's
//! `tftp`, whose default mode it is, among others) turns that back into the
//! file's exact bytes, CR LF into LF and CR NUL into CR, as tftpd-hpa and
//! dnsmasq send it. Reads only; uploads are stored as sent.

/// The bytes a netascii read sends for `file`.
pub fn encode(file: &[u8]) -> Vec<u8> {
    let extra = file.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    let mut out = Vec::with_capacity(file.len() + extra);
    for &b in file {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a netascii client does with what it receives.
    fn decode(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(wire.len());
        let mut bytes = wire.iter().copied().peekable();
        while let Some(b) = bytes.next() {
            match (b, bytes.peek()) {
                (b'\r', Some(b'\n')) => {
                    bytes.next();
                    out.push(b'\n');
                }
                (b'\r', Some(0)) => {
                    bytes.next();
                    out.push(b'\r');
                }
                _ => out.push(b),
            }
        }
        out
    }

    #[test]
    fn line_ends_become_cr_lf_and_bare_cr_becomes_cr_nul() {
        assert_eq!(encode(b"a\nb\r\nc\rd"), b"a\r\nb\r\0\r\nc\r\0d");
        assert_eq!(encode(b""), b"");
        assert_eq!(encode(b"\n\n"), b"\r\n\r\n");
    }

    #[test]
    fn a_netascii_client_gets_the_exact_bytes_back() {
        let every_byte: Vec<u8> = (0..=255u8)
            .chain(b"\r\n\r\r\n\n\0\r".iter().copied())
            .collect();
        for file in [
            &b"DEFAULT menu.c32\nLABEL x\r\n"[..],
            &every_byte,
            b"\r",
            b"\r\0",
        ] {
            assert_eq!(decode(&encode(file)), file);
        }
    }
}
