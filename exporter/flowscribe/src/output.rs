//! Record output: JSON lines to stdout or appended to a file, flushed after
//! every batch so a reader (or a crash) sees whole batches.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use anyhow::Context;
use serde_json::Value;

use crate::config::Output;

pub struct RecordWriter {
    out: Box<dyn Write>,
}

impl RecordWriter {
    pub fn open(output: &Output) -> anyhow::Result<Self> {
        let out: Box<dyn Write> = match output {
            Output::Stdout => Box::new(BufWriter::new(std::io::stdout())),
            Output::File(path) => Box::new(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening output file {}", path.display()))?,
            )),
        };
        Ok(RecordWriter { out })
    }

    pub fn write_batch(&mut self, records: &[Value]) -> anyhow::Result<()> {
        for r in records {
            serde_json::to_writer(&mut self.out, r)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}
