//! A small disk for tests: a tmpfs that only the calling thread (and the threads it starts)
//! sees, filled with a file and freed again by deleting it, remounted read-only, or with a
//! directory made immutable.
#![allow(dead_code, unreachable_pub)]

use std::{
    ffi::CString,
    io::Write,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use crate::common;

/// A kibibyte.
pub const KIB: u64 = 1024;

/// A directory of its own, on a `bytes`-sized tmpfs that only the calling thread and the
/// threads it starts from now on see: the thread is given its own mount namespace (unsharing it
/// from one thread of the test process leaves the others as they were), made private so that
/// nothing mounted in it reaches the host's, and the tmpfs is mounted there. It goes away with
/// the last thread in the namespace.
pub fn small_disk(prefix: &str, bytes: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique(prefix));
    std::fs::create_dir_all(&dir).expect("mount point");
    let c = |s: &[u8]| CString::new(s).expect("no NUL");
    let (root, tmpfs) = (c(b"/"), c(b"tmpfs"));
    let target = c(dir.as_os_str().as_bytes());
    let options = c(format!("size={bytes}").as_bytes());
    // SAFETY: `unshare` takes no pointer. Each `mount` is given NUL-terminated strings that live
    // until it returns, or null where the call allows it (the source and type of a propagation
    // change, which also ignores its data). The calls change the mounts this thread sees and
    // nothing of the process's memory.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "a mount namespace of this thread's own (needs root): {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "mounts private to the namespace: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::mount(
                tmpfs.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                0,
                options.as_ptr().cast()
            ),
            0,
            "a {bytes}-byte tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    dir
}

/// Remounts the calling thread's tmpfs at `dir` (from [`small_disk`]) read-only, or writable
/// again: a disk that refuses every change, as one remounted read-only after errors does.
pub fn set_read_only(dir: &Path, read_only: bool) {
    let target = CString::new(dir.as_os_str().as_bytes()).expect("no NUL");
    let flags = libc::MS_REMOUNT | if read_only { libc::MS_RDONLY } else { 0 };
    // SAFETY: a remount takes the NUL-terminated target, alive until the call returns, and
    // nulls for the source, type and data it ignores; it changes only this thread's mount.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "remount {} (read-only {read_only}): {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

/// Writes `bytes` zero bytes to `path`, or as many as the disk takes; how many it took.
pub fn fill(path: &Path, bytes: u64) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    let mut written = 0;
    while written < bytes {
        let n = (bytes - written).min(4096) as usize;
        match f.write(&chunk[..n]) {
            Ok(0) | Err(_) => break,
            Ok(k) => written += k as u64,
        }
    }
    written
}

/// Sets or clears the immutable attribute of `dir` (`chattr +i`): no file in it can then be
/// created, deleted or renamed, while files already open in it can still be written. (A
/// read-only remount is refused while a file is open for writing.)
pub fn set_immutable(dir: &Path, on: bool) {
    const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    let f = std::fs::File::open(dir).expect("open the directory");
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, to a live local; the fd is
    // open for the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    assert_eq!(rc, 0, "get flags: {}", std::io::Error::last_os_error());
    flags = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, from a live local.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    assert_eq!(
        rc,
        0,
        "immutable {on} on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}
