//! The socket-files iterator (tcptrace-ebpf owners.rs): which process holds
//! which socket, walked by the kernel instead of read link by link from
//! every /proc/PID/fd. The loader runs it once, before `ready`.
use std::{
    collections::{HashMap, HashSet},
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

/// Socket inodes by process id, and how they were found for the start-up
/// report. None when the iterator is unavailable (before Linux 5.8, or
/// refused): then the caller reads /proc, as the report says.
pub fn walk(ebpf: &mut Ebpf, btf: Option<&Result<Btf, BtfError>>) -> (Option<HashMap<u32, HashSet<u64>>>, HookReport) {
    let mut report =
        HookReport { purpose: PURPOSE, method: None, refused: Vec::new(), net: None, programs: Vec::new() };
    match run(ebpf, btf) {
        Ok(bytes) => {
            report.method = Some(format!("iter {TARGET}"));
            (Some(by_process(&bytes)), report)
        }
        Err(error) => {
            report.method = Some("procfs /proc/PID/fd".to_owned());
            report.refused.push(format!("iter {TARGET}: {error}"));
            (None, report)
        }
    }
}

/// Loads the program, reads the iterator to its end, unloads the program.
fn run(ebpf: &mut Ebpf, btf: Option<&Result<Btf, BtfError>>) -> Result<Vec<u8>, String> {
    let program = ebpf.program_mut(PROGRAM).ok_or_else(|| format!("{PROGRAM} is not in the object"))?;
    let program: &mut Iter = program.try_into().map_err(|error: ProgramError| brief(&error))?;
    let btf = kernel_btf(btf).map_err(|_| "no kernel BTF loaded (--attach tracepoint)".to_owned())?;
    program.load(TARGET, btf).map_err(|error| brief(&error))?;
    let bytes = read_once(program);
    // Run once: nothing of it need stay in the kernel.
    let _ = program.unload();
    bytes
}

fn read_once(program: &mut Iter) -> Result<Vec<u8>, String> {
    let link = program.attach().map_err(|error| brief(&error))?;
    let link = program.take_link(link).map_err(|error| brief(&error))?;
    let mut file = link.into_file().map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|error| error.to_string())?;
    Ok(bytes)
}

fn by_process(bytes: &[u8]) -> HashMap<u32, HashSet<u64>> {
    let mut sockets: HashMap<u32, HashSet<u64>> = HashMap::new();
    let (records, _) = bytes.as_chunks::<{ size_of::<SocketFile>() }>();
    for record in records {
        // SAFETY: a whole record; SocketFile is plain old data valid for any bytes.
        let record: SocketFile = unsafe { record.as_ptr().cast::<SocketFile>().read_unaligned() };
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
            SocketFile { inode: 7, tgid: 1, _pad: 0 },
            SocketFile { inode: 8, tgid: 2, _pad: 0 },
            SocketFile { inode: 9, tgid: 1, _pad: 0 },
            SocketFile { inode: 7, tgid: 1, _pad: 0 },
        ];
        // SAFETY: plain old data, viewed as its bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(records.as_ptr().cast::<u8>(), std::mem::size_of_val(&records)) };
        let sockets = by_process(bytes);
        assert_eq!(sockets[&1], HashSet::from([7, 9]));
        assert_eq!(sockets[&2], HashSet::from([8]));
    }
}
