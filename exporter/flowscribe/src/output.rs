//! Record output: one encoded record per line to stdout or appended to a
//! file, flushed after every batch so a reader (or a crash) sees whole
//! batches.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use crate::config::Output;
use anyhow::Context;

pub struct RecordWriter {
    /// None: `output: none`, records go only to the sinks.
    out: Option<Box<dyn Write>>,
}

impl RecordWriter {
    pub fn open(output: &Output) -> anyhow::Result<Self> {
        let out: Box<dyn Write> = match output {
            Output::None => return Ok(RecordWriter { out: None }),
            Output::Stdout => Box::new(BufWriter::new(std::io::stdout())),
            Output::File(path) => Box::new(BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening output file {}", path.display()))?,
            )),
        };
        Ok(RecordWriter { out: Some(out) })
    }

    /// Write encoded records, one per line, then flush.
    pub fn write_lines(&mut self, lines: &[Vec<u8>]) -> anyhow::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        for l in lines {
            out.write_all(l)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }

    pub fn is_none(&self) -> bool {
        self.out.is_none()
    }
}
