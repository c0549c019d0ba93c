//! A node's state as of a height, as a dump, in flat memory.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{IteratorMode, Options, DB};

use super::histories::value_as_of;
use super::reader::MetashrewDb;

impl MetashrewDb {
    /// Writes the guest's state as of `height` to `out` as a dump (key order), in flat memory:
    /// the values go through a temporary RocksDB in `scratch`, which sorts them.
    pub fn write_state(&self, height: u32, scratch: &Path, out: impl std::io::Write) -> Result<schema::DumpFile> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_write_buffer_size(16 << 20);
        options.set_compression_type(rocksdb::DBCompressionType::None);
        let sorter = DB::open(&options, scratch.join("sorted")).context("opening the scratch database")?;
        let mut write = rocksdb::WriteOptions::default();
        write.disable_wal(true);
        for history in self.histories() {
            let (key, history) = history?;
            if let Some(value) = value_as_of(&history, height) {
                sorter.put_opt(&key, value, &write).context("writing to the scratch database")?;
            }
        }
        let entries = sorter.iterator(IteratorMode::Start).map(|entry| entry.context("reading the scratch database"));
        crate::dump::write_entries(entries, out)
    }
}
