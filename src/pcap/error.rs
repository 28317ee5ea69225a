//! Typed errors of the pcap reader and writer. Every reader error carries the byte offset (from
//! the start of the stream) of the record or block at fault, so a failed upstream can say where
//! its data went bad.

/// Something is wrong with a capture stream, or a packet cannot be written faithfully.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The first bytes are neither pcap nor pcapng; known other formats are named.
    #[error("not a pcap or pcapng stream: {found} (magic {magic:02x?}) at offset 0")]
    NotPcap {
        /// What the bytes look like: "gzip-compressed data", "zstd-compressed data",
        /// "Solaris snoop capture", "HTML or text", or "unknown format".
        found: &'static str,
        /// The first (up to) four bytes.
        magic: Vec<u8>,
    },
    /// The stream ended in the middle of something.
    #[error("truncated {what} at offset {offset}: {have} of {need} bytes present")]
    Truncated {
        /// "file header", "record header", "record data", "block header" or "block".
        what: &'static str,
        /// Offset of the incomplete item.
        offset: u64,
        /// Bytes the item needs.
        need: u64,
        /// Bytes that arrived before the end.
        have: u64,
    },
    /// A record or block claims more bytes than any sane capture holds.
    #[error("{what} of {len} bytes at offset {offset} exceeds the limit of {max} bytes")]
    TooLarge {
        /// "record" or "block".
        what: &'static str,
        /// Offset of the record or block.
        offset: u64,
        /// Length it claims.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A file or section header with a version this reader does not understand.
    #[error("unsupported {format} version {major}.{minor} at offset {offset}")]
    BadVersion {
        /// "pcap" or "pcapng".
        format: &'static str,
        /// Offset of the header.
        offset: u64,
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// The link-type field has reserved bits set (libpcap refuses such files too).
    #[error("link-type field {value:#010x} has reserved bits set at offset {offset}")]
    ReservedLinkTypeBits {
        /// Offset of the header.
        offset: u64,
        /// The raw field.
        value: u32,
    },
    /// A pcapng block is structurally broken.
    #[error("malformed pcapng block (type {block_type:#010x}) at offset {offset}: {reason}")]
    BadBlock {
        /// Offset of the block.
        offset: u64,
        /// Its type field.
        block_type: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A packet block names an interface that no IDB of its section declared.
    #[error(
        "packet at offset {offset} names interface {if_id}, but the section declares {declared}"
    )]
    UnknownInterface {
        /// Offset of the packet block.
        offset: u64,
        /// The interface id it names.
        if_id: u32,
        /// How many interfaces the section declares.
        declared: usize,
    },
    /// A section declares more interfaces than the reader keeps.
    #[error("more than {max} interfaces in one section at offset {offset}")]
    TooManyInterfaces {
        /// Offset of the offending IDB.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// A run of all-zero record headers: a sparse or zero-filled file, not packets.
    #[error(
        "{count} all-zero record headers in a row at offset {offset}: zero-filled, not packets"
    )]
    ZeroFilled {
        /// Offset of the first zero record of the run.
        offset: u64,
        /// The run length that stopped reading.
        count: u32,
    },
    /// An interface's `if_tsresol` cannot be represented (10^20 and up, 2^64 and up).
    #[error("interface timestamp resolution {tsresol:#04x} out of range at offset {offset}")]
    BadTsResolution {
        /// Offset of the IDB.
        offset: u64,
        /// The raw option value.
        tsresol: u8,
    },
    /// A BPF filter expression does not compile.
    #[error("bad filter {expr:?}: {reason}")]
    BadFilter {
        /// The expression.
        expr: String,
        /// libpcap's message.
        reason: String,
    },
    /// The writer was handed a packet it cannot write without lying about it.
    #[error("cannot write packet: {reason}")]
    Unwritable {
        /// Why (a link type the output header does not declare, a timestamp out of range...).
        reason: String,
    },
}

impl Error {
    /// True when the error means "the data stopped early", as opposed to "the data is wrong".
    pub fn is_truncation(&self) -> bool {
        matches!(self, Error::Truncated { .. })
    }
}
