//! What enforcement does to a held process: read the bytes it is about to
//! write, continue it, shut its connection's socket down, kill it.

use std::{
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::FileExt,
    },
};

/// Reads `len` bytes at `addr` of process `pid` (stopped, so they cannot change).
pub fn read_memory(pid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0u8; len];
    mem.read_exact_at(&mut buf, addr)?;
    Ok(buf)
}

fn signal(pid: u32, sig: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Continues a held process.
pub fn resume(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGCONT)
}

/// Kills a process (stopped or not).
pub fn kill(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGKILL)
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, …); None when gone.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised comm, which may contain spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether process `pid` is stopped (state `T`).
pub fn is_stopped(pid: u32) -> bool {
    state(pid) == Some('T')
}

fn syscall_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// Shuts down (both directions) the socket behind descriptor `fd` of process
/// `pid`: its pending and later writes fail, nothing more goes out on it.
/// Needs `pidfd_getfd` (Linux 5.6) and ptrace rights over the process.
pub fn shutdown_socket(pid: u32, fd: i32) -> io::Result<()> {
    // SAFETY: plain syscalls; descriptors are owned as soon as they exist.
    let pidfd = syscall_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    let sock =
        syscall_fd(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(sock.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other(format!("descriptor {fd} is not a socket")));
    }
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) } != 0 {
        let e = io::Error::last_os_error();
        // Already shut or reset by the peer: nothing can go out on it either.
        if e.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_state() {
        let data = b"held request bytes".to_vec();
        let got = read_memory(std::process::id(), data.as_ptr() as u64, data.len())
            .expect("read /proc/self/mem");
        assert_eq!(got, data);
        assert!(!is_stopped(std::process::id()));
        // An unmapped address is an error, not garbage.
        assert!(read_memory(std::process::id(), 8, 16).is_err());
    }

    #[test]
    fn shuts_down_a_connection_of_another_process_handle() {
        // Our own process stands in for the held one: the socket is reached
        // through pidfd_getfd like a held process's.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        match shutdown_socket(std::process::id(), client.as_raw_fd()) {
            Ok(()) => {}
            // Containers without ptrace rights over ourselves.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return,
            Err(e) => panic!("shutdown: {e}"),
        }
        use std::io::{Read, Write};
        let mut c = &client;
        let err = c.write_all(b"x").and_then(|()| c.write_all(b"y"));
        assert!(err.is_err(), "writes after shutdown must fail");
        let mut buf = [0u8; 4];
        assert_eq!(server.read(&mut buf).expect("eof"), 0);
        // Not a socket: refused.
        let file = std::fs::File::open("/proc/self/stat").expect("file");
        assert!(shutdown_socket(std::process::id(), file.as_raw_fd()).is_err());
    }
}
