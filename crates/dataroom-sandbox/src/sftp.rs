//! The SFTP subsystem of a simulated instance. Paths are rooted at the instance's working
//! directory: `/etc/dataroom/config.json` over SFTP is `etc/dataroom/config.json` under it.
//! Every operation resolves its path beneath that directory (cap-std: `openat2` with
//! `RESOLVE_BENEATH`), so neither `..` nor a symbolic link made through exec (`ln -s / x`)
//! reaches the machine's own files. Plain `rename` refuses to replace an existing file, as
//! OpenSSH's does; `posix-rename@openssh.com` replaces it atomically.
//!
//! The path operations are short blocking calls on local files, made on the session's task.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, Metadata, MetadataExt, OpenOptions, OpenOptionsExt};
use cap_std::fs::{Permissions, PermissionsExt};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const POSIX_RENAME: &str = "posix-rename@openssh.com";

enum Open {
    File(tokio::fs::File),
    /// A directory listing, sent whole on the first read.
    Dir(Option<Vec<File>>),
}

pub struct Sftp {
    root: Dir,
    handles: HashMap<String, Open>,
    next: u64,
}

impl Sftp {
    /// The subsystem for the instance whose working directory is `home`.
    pub fn new(home: &Path) -> std::io::Result<Self> {
        let root = Dir::open_ambient_dir(home, cap_std::ambient_authority())?;
        Ok(Sftp { root, handles: HashMap::new(), next: 0 })
    }

    fn insert(&mut self, id: u32, open: Open) -> Handle {
        self.next += 1;
        let handle = self.next.to_string();
        self.handles.insert(handle.clone(), open);
        Handle { id, handle }
    }

    fn file(&mut self, handle: &str) -> Result<&mut tokio::fs::File, StatusReply> {
        match self.handles.get_mut(handle) {
            Some(Open::File(file)) => Ok(file),
            _ => Err(StatusCode::Failure.with_message("no such open file")),
        }
    }
}

/// The absolute, lexically normalised form of an SFTP path (relative paths start at `/`).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default()),
            Component::ParentDir => drop(parts.pop()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// An SFTP path as a path relative to the instance directory (`.` for `/`).
fn local(path: &str) -> PathBuf {
    match normalize(path).trim_start_matches('/') {
        "" => PathBuf::from("."),
        relative => PathBuf::from(relative),
    }
}

fn reply(e: std::io::Error) -> StatusReply {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    code.with_message(e.to_string())
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

fn open_options(flags: OpenFlags, attrs: &FileAttributes) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(flags.contains(OpenFlags::READ)).write(flags.contains(OpenFlags::WRITE));
    options.append(flags.contains(OpenFlags::APPEND)).truncate(flags.contains(OpenFlags::TRUNCATE));
    // SFTP's EXCLUDE comes with CREATE; Rust's create_new is both.
    match (flags.contains(OpenFlags::CREATE), flags.contains(OpenFlags::EXCLUDE)) {
        (true, true) => drop(options.create_new(true)),
        (true, false) => drop(options.create(true)),
        _ => {}
    }
    if let Some(mode) = attrs.permissions {
        options.mode(mode & 0o7777);
    }
    options
}

fn set_attrs(root: &Dir, path: &Path, attrs: &FileAttributes) -> std::io::Result<()> {
    if let Some(size) = attrs.size {
        root.open_with(path, OpenOptions::new().write(true))?.set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        root.set_permissions(path, Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

fn attributes(metadata: &Metadata) -> FileAttributes {
    let seconds = |t: std::io::Result<std::time::SystemTime>| {
        t.ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs() as u32)
    };
    FileAttributes {
        size: Some(metadata.len()),
        uid: Some(metadata.uid()),
        gid: Some(metadata.gid()),
        permissions: Some(metadata.mode()),
        atime: seconds(metadata.accessed().map(|t| t.into_std())),
        mtime: seconds(metadata.modified().map(|t| t.into_std())),
        ..Default::default()
    }
}

fn stat(root: &Dir, path: &str, follow: bool) -> Result<FileAttributes, StatusReply> {
    let metadata = match follow {
        true => root.metadata(local(path)),
        false => root.symlink_metadata(local(path)),
    };
    Ok(attributes(&metadata.map_err(reply)?))
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(&mut self, _: u32, _: HashMap<String, String>) -> Result<Version, Self::Error> {
        let mut version = Version::new();
        version.extensions.insert(POSIX_RENAME.into(), "1".into());
        Ok(version)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        flags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let file = self.root.open_with(local(&filename), &open_options(flags, &attrs)).map_err(reply)?;
        Ok(self.insert(id, Open::File(tokio::fs::File::from_std(file.into_std()))))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::File(mut file)) => file.flush().await.map_err(reply)?,
            Some(Open::Dir(_)) => {}
            None => return Err(StatusCode::Failure.with_message("no such handle")),
        }
        Ok(ok(id))
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset)).await.map_err(reply)?;
        let mut data = vec![0; len.min(256 * 1024) as usize];
        let n = file.read(&mut data).await.map_err(reply)?;
        if n == 0 && len > 0 {
            return Err(StatusCode::Eof.into());
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset)).await.map_err(reply)?;
        file.write_all(&data).await.map_err(reply)?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: stat(&self.root, &path, false)? })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: stat(&self.root, &path, true)? })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let metadata = self.file(&handle)?.metadata().await.map_err(reply)?;
        Ok(Attrs { id, attrs: FileAttributes::from(&metadata) })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        set_attrs(&self.root, &local(&path), &attrs).map_err(reply)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        if let Some(size) = attrs.size {
            file.set_len(size).await.map_err(reply)?;
        }
        if let Some(mode) = attrs.permissions {
            let mode = std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777);
            file.set_permissions(mode).await.map_err(reply)?;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let entries = self.root.read_dir(local(&path)).map_err(reply)?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(reply)?;
            let Ok(metadata) = entry.metadata() else { continue };
            files.push(File::new(entry.file_name().to_string_lossy(), attributes(&metadata)));
        }
        Ok(self.insert(id, Open::Dir(Some(files))))
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir(listing)) => match listing.take() {
                Some(files) if !files.is_empty() => Ok(Name { id, files }),
                _ => Err(StatusCode::Eof.into()),
            },
            _ => Err(StatusCode::Failure.with_message("no such open directory")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.root.remove_file(local(&filename)).map_err(reply)?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let mut builder = DirBuilder::new();
        builder.mode(attrs.permissions.unwrap_or(0o777) & 0o7777);
        self.root.create_dir_with(local(&path), &builder).map_err(reply)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.root.remove_dir(local(&path)).map_err(reply)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name { id, files: vec![File::dummy(normalize(&path))] })
    }

    async fn rename(&mut self, id: u32, from: String, to: String) -> Result<Status, Self::Error> {
        let (from, to) = (local(&from), local(&to));
        if self.root.symlink_metadata(&to).is_ok() {
            return Err(StatusCode::Failure.with_message("the target exists (use posix-rename)"));
        }
        self.root.rename(from, &self.root, to).map_err(reply)?;
        Ok(ok(id))
    }

    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Result<Packet, Self::Error> {
        if request != POSIX_RENAME {
            return Err(StatusCode::OpUnsupported.into());
        }
        let (from, to): (String, String) = russh_sftp::de::from_bytes(&mut Bytes::from(data))
            .map_err(|_| StatusCode::BadMessage.with_message("expected two paths"))?;
        self.root.rename(local(&from), &self.root, local(&to)).map_err(reply)?;
        Ok(Packet::Status(ok(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_climb_above_the_instance_root() {
        assert_eq!(normalize("/etc/dataroom/config.json"), "/etc/dataroom/config.json");
        assert_eq!(normalize("../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalize("a/./b/../c"), "/a/c");
        assert_eq!(normalize("."), "/");
        assert_eq!(normalize(""), "/");
    }

    /// A link made through exec (`ln -s / x`, or to any path outside) leads nowhere over SFTP:
    /// reads, writes, listings and stats through it are refused.
    #[tokio::test]
    async fn a_symbolic_link_out_of_the_instance_leads_nowhere() {
        use russh_sftp::server::Handler;
        let machine = tempfile::tempdir().unwrap();
        std::fs::write(machine.path().join("secret"), "host file").unwrap();
        let home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", home.path().join("x")).unwrap();
        std::os::unix::fs::symlink(machine.path(), home.path().join("y")).unwrap();
        std::os::unix::fs::symlink(machine.path().join("secret"), home.path().join("z")).unwrap();
        let mut sftp = Sftp::new(home.path()).unwrap();
        let secret = "/y/secret".to_string();
        let read = OpenFlags::READ;
        let write = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
        for (path, flags) in
            [("/x/etc/passwd", read), (secret.as_str(), read), ("/z", read), ("/y/new", write), ("/z", write)]
        {
            let opened = sftp.open(1, path.into(), flags, FileAttributes::default()).await;
            assert!(opened.is_err(), "{path} opened through a link");
        }
        assert!(sftp.opendir(1, "/x/etc".into()).await.is_err());
        assert!(sftp.stat(1, "/y/secret".into()).await.is_err());
        assert!(sftp.mkdir(1, "/y/dir".into(), FileAttributes::default()).await.is_err());
        assert!(sftp.remove(1, "/y/secret".into()).await.is_err());
        assert!(sftp.rename(1, "/y/secret".into(), "/stolen".into()).await.is_err());
        assert_eq!(std::fs::read_to_string(machine.path().join("secret")).unwrap(), "host file");
        assert!(!machine.path().join("new").exists() && !machine.path().join("dir").exists());
        // A link inside the instance still works, as on a real machine.
        std::fs::write(home.path().join("real"), "mine").unwrap();
        std::os::unix::fs::symlink("real", home.path().join("inside")).unwrap();
        assert!(sftp.open(1, "/inside".into(), read, FileAttributes::default()).await.is_ok());
    }
}
