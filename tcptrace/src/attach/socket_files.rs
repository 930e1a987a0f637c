//! The socket-files iterator (tcptrace-ebpf owners.rs): which process holds
//! which socket, walked by the kernel instead of read link by link from
//! every /proc/PID/fd. The loader creates it before `ready`; it is read
//! then, or with the snapshot's dumps once tracing is ready.
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::Read,
};

use aya::{
    Btf, BtfError, Ebpf,
    programs::{Iter, ProgramError},
};
use tcptrace_common::SocketFile;

use super::{HookReport, brief, kernel_btf};

/// What the iterator walks: every open file of every task (`bpf_iter_task_file`).
pub const TARGET: &str = "task_file";
const PROGRAM: &str = "tcptrace_socket_files";
pub const PURPOSE: &str = "owners of sockets open at start";

/// The iterator, attached: reading it walks every process's files then,
/// with no capability (the loader creates it before they are dropped).
pub struct Walk(File);

impl Walk {
    /// Walks now: one record per socket file of every process.
    pub fn read(mut self) -> std::io::Result<Vec<SocketFile>> {
        let mut bytes = Vec::new();
        self.0.read_to_end(&mut bytes)?;
        let (records, _) = bytes.as_chunks::<{ size_of::<SocketFile>() }>();
        // SAFETY: whole records; SocketFile is plain old data valid for any bytes.
        Ok(records.iter().map(|record| unsafe { record.as_ptr().cast::<SocketFile>().read_unaligned() }).collect())
    }
}

/// The walk, and how owners will be found for the start-up report. None
/// when the iterator is unavailable (before Linux 5.8, or refused): then
/// the caller reads /proc, as the report says.
pub fn prepare(ebpf: &mut Ebpf, btf: Option<&Result<Btf, BtfError>>) -> (Option<Walk>, HookReport) {
    let mut report =
        HookReport { purpose: PURPOSE, method: None, refused: Vec::new(), net: None, programs: Vec::new() };
    match attach(ebpf, btf) {
        Ok(walk) => {
            report.method = Some(format!("iter {TARGET}"));
            (Some(walk), report)
        }
        Err(error) => {
            report.method = Some("procfs /proc/PID/fd".to_owned());
            report.refused.push(format!("iter {TARGET}: {error}"));
            (None, report)
        }
    }
}

/// Loads the program and creates the iterator; the program's handle goes at
/// once (the iterator holds it until read and dropped: nothing stays loaded).
fn attach(ebpf: &mut Ebpf, btf: Option<&Result<Btf, BtfError>>) -> Result<Walk, String> {
    let program = ebpf.program_mut(PROGRAM).ok_or_else(|| format!("{PROGRAM} is not in the object"))?;
    let program: &mut Iter = program.try_into().map_err(|error: ProgramError| brief(&error))?;
    let btf = kernel_btf(btf).map_err(|_| "no kernel BTF loaded (--attach tracepoint)".to_owned())?;
    program.load(TARGET, btf).map_err(|error| brief(&error))?;
    let file = iterator(program);
    let _ = program.unload();
    file.map(Walk)
}

fn iterator(program: &mut Iter) -> Result<File, String> {
    let link = program.attach().map_err(|error| brief(&error))?;
    let link = program.take_link(link).map_err(|error| brief(&error))?;
    link.into_file().map_err(|error| error.to_string())
}

/// Socket inodes by process id.
pub fn by_process(records: &[SocketFile]) -> HashMap<u32, HashSet<u64>> {
    let mut sockets: HashMap<u32, HashSet<u64>> = HashMap::new();
    for record in records {
        sockets.entry(record.tgid).or_default().insert(record.inode);
    }
    sockets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_records_by_process() {
        let records = [
            SocketFile { inode: 7, tgid: 1, netns: 5 },
            SocketFile { inode: 8, tgid: 2, netns: 5 },
            SocketFile { inode: 9, tgid: 1, netns: 6 },
            SocketFile { inode: 7, tgid: 1, netns: 5 },
        ];
        let sockets = by_process(&records);
        assert_eq!(sockets[&1], HashSet::from([7, 9]));
        assert_eq!(sockets[&2], HashSet::from([8]));
    }
}
