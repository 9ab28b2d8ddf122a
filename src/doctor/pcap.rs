//! A small reader (and writer, for tests and fixtures) of classic pcap files:
//! either byte order, microsecond or nanosecond timestamps, Ethernet frames
//! (linktype 1) only.
//!
//! Bounded: a record longer than [`MAX_RECORD_LEN`], or one that runs past
//! the end of the file, is an error, never a panic or a large allocation.

use std::io::{self, Read, Write};
use std::time::Duration;

/// Longest record accepted; tcpdump's own snaplen limit.
pub const MAX_RECORD_LEN: u32 = 256 * 1024;
/// `network` of a file holding Ethernet frames.
pub const LINKTYPE_ETHERNET: u32 = 1;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// What can be wrong with a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read: {0}")]
    Io(#[from] io::Error),
    #[error(
        "not a pcap file (magic {0:#010x}; pcapng is not read: convert it with `editcap -F pcap`)"
    )]
    BadMagic(u32),
    #[error("linktype {0} is not Ethernet (capture with -i IFACE, not -i any)")]
    NotEthernet(u32),
    #[error("record {index}: length {len} is over the {MAX_RECORD_LEN}-byte limit")]
    RecordTooLong { index: u64, len: u32 },
    #[error("record {index} runs past the end of the file")]
    Truncated { index: u64 },
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The capture timestamp, since the Unix epoch.
    pub at: Duration,
    /// The captured bytes (possibly fewer than were on the wire).
    pub data: Vec<u8>,
}

/// Reads records one at a time from a pcap stream.
pub struct Reader<R> {
    input: R,
    big_endian: bool,
    nanos: bool,
    index: u64,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> Result<Self, Error> {
        let mut header = [0; GLOBAL_HEADER_LEN];
        input.read_exact(&mut header).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::BadMagic(0),
            _ => Error::Io(e),
        })?;
        let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let magic_be = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let (big_endian, nanos) = match (magic_le, magic_be) {
            (MAGIC_MICROS, _) => (false, false),
            (MAGIC_NANOS, _) => (false, true),
            (_, MAGIC_MICROS) => (true, false),
            (_, MAGIC_NANOS) => (true, true),
            _ => return Err(Error::BadMagic(magic_be)),
        };
        let reader = Reader {
            input,
            big_endian,
            nanos,
            index: 0,
        };
        let linktype = reader.u32_at(&header, 20);
        if linktype != LINKTYPE_ETHERNET {
            return Err(Error::NotEthernet(linktype));
        }
        Ok(reader)
    }

    /// The next record; `Ok(None)` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        let mut header = [0; RECORD_HEADER_LEN];
        let index = self.index;
        match read_full(&mut self.input, &mut header)? {
            0 => return Ok(None),
            RECORD_HEADER_LEN => {}
            _ => return Err(Error::Truncated { index }),
        }
        let seconds = u64::from(self.u32_at(&header, 0));
        let fraction = self.u32_at(&header, 4);
        let len = self.u32_at(&header, 8);
        if len > MAX_RECORD_LEN {
            return Err(Error::RecordTooLong { index, len });
        }
        let nanos = if self.nanos {
            u64::from(fraction)
        } else {
            u64::from(fraction) * 1000
        };
        let at = Duration::from_secs(seconds) + Duration::from_nanos(nanos);
        // `len` is bounded above, so this allocation is too.
        let mut data = vec![0; len as usize];
        if read_full(&mut self.input, &mut data)? != data.len() {
            return Err(Error::Truncated { index });
        }
        self.index += 1;
        Ok(Some(Record { at, data }))
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> u32 {
        let mut word = [0; 4];
        if let Some(src) = bytes.get(at..at + 4) {
            word.copy_from_slice(src);
        }
        if self.big_endian {
            u32::from_be_bytes(word)
        } else {
            u32::from_le_bytes(word)
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Fills `buf` as far as the input allows; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes a little-endian, microsecond pcap of Ethernet frames.
pub struct Writer<W> {
    output: W,
}

impl<W: Write> Writer<W> {
    /// Writes the global header.
    pub fn new(mut output: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(GLOBAL_HEADER_LEN);
        header.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&MAX_RECORD_LEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        output.write_all(&header)?;
        Ok(Writer { output })
    }

    /// Appends one frame captured at `at` (since the epoch).
    pub fn write(&mut self, at: Duration, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&len| len <= MAX_RECORD_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
        let seconds = u32::try_from(at.as_secs()).unwrap_or(u32::MAX);
        let mut header = Vec::with_capacity(RECORD_HEADER_LEN);
        header.extend_from_slice(&seconds.to_le_bytes());
        header.extend_from_slice(&at.subsec_micros().to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        self.output.write_all(&header)?;
        self.output.write_all(frame)
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.output.flush()?;
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(big_endian: bool, nanos: bool, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let word = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(&word(if nanos { MAGIC_NANOS } else { MAGIC_MICROS }));
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&word(LINKTYPE_ETHERNET));
        for (seconds, fraction, data) in records {
            out.extend_from_slice(&word(*seconds));
            out.extend_from_slice(&word(*fraction));
            out.extend_from_slice(&word(data.len() as u32));
            out.extend_from_slice(&word(data.len() as u32));
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn reads_every_byte_order_and_resolution() {
        for big_endian in [false, true] {
            for nanos in [false, true] {
                let bytes = file(big_endian, nanos, &[(7, 500, b"abc"), (8, 0, b"")]);
                let records: Vec<_> = Reader::new(&bytes[..])
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let fraction = if nanos {
                    Duration::from_nanos(500)
                } else {
                    Duration::from_micros(500)
                };
                assert_eq!(records.len(), 2);
                assert_eq!(records[0].at, Duration::from_secs(7) + fraction);
                assert_eq!(records[0].data, b"abc");
                assert_eq!(records[1].data, b"");
            }
        }
    }

    #[test]
    fn writer_output_reads_back() {
        let mut writer = Writer::new(Vec::new()).unwrap();
        writer.write(Duration::from_millis(1500), b"frame").unwrap();
        let bytes = writer.finish().unwrap();
        let mut reader = Reader::new(&bytes[..]).unwrap();
        let record = reader.next_record().unwrap().unwrap();
        assert_eq!(record.at, Duration::from_millis(1500));
        assert_eq!(record.data, b"frame");
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn rejects_bad_headers_and_records() {
        assert!(matches!(Reader::new(&[][..]), Err(Error::BadMagic(_))));
        assert!(matches!(Reader::new(&[0; 24][..]), Err(Error::BadMagic(0))));
        let mut other_link = file(false, false, &[]);
        other_link[20] = 113;
        assert!(matches!(
            Reader::new(&other_link[..]),
            Err(Error::NotEthernet(113))
        ));

        let mut huge = file(false, false, &[(1, 0, b"")]);
        huge[24 + 8..24 + 12].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
        let mut reader = Reader::new(&huge[..]).unwrap();
        assert!(matches!(
            reader.next_record(),
            Err(Error::RecordTooLong { index: 0, .. })
        ));

        let whole = file(false, false, &[(1, 0, b"abcdef")]);
        for cut in 25..whole.len() {
            let mut reader = Reader::new(&whole[..cut]).unwrap();
            assert!(
                matches!(reader.next_record(), Err(Error::Truncated { index: 0 })),
                "cut at {cut}"
            );
        }
    }
}
