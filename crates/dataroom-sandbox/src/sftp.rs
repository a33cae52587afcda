//! The SFTP subsystem of a simulated instance. Paths are rooted at the instance's working
//! directory: `/etc/dataroom/config.json` over SFTP is `etc/dataroom/config.json` under it, and
//! `..` never climbs above it. Plain `rename` refuses to replace an existing file, as OpenSSH's
//! does; `posix-rename@openssh.com` replaces it atomically.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
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
    root: PathBuf,
    handles: HashMap<String, Open>,
    next: u64,
}

impl Sftp {
    pub fn new(root: PathBuf) -> Self {
        Sftp { root, handles: HashMap::new(), next: 0 }
    }

    fn local(&self, path: &str) -> PathBuf {
        self.root.join(normalize(path).trim_start_matches('/'))
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

async fn set_attrs(path: &Path, attrs: &FileAttributes) -> std::io::Result<()> {
    if let Some(size) = attrs.size {
        tokio::fs::OpenOptions::new().write(true).open(path).await?.set_len(size).await?;
    }
    if let Some(mode) = attrs.permissions {
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777)).await?;
    }
    Ok(())
}

async fn stat(path: &Path, follow: bool) -> Result<FileAttributes, StatusReply> {
    let metadata = match follow {
        true => tokio::fs::metadata(path).await,
        false => tokio::fs::symlink_metadata(path).await,
    };
    Ok(FileAttributes::from(&metadata.map_err(reply)?))
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
        let path = self.local(&filename);
        let mut options = tokio::fs::OpenOptions::from(std::fs::OpenOptions::from(flags));
        if let Some(mode) = attrs.permissions {
            options.mode(mode & 0o7777);
        }
        let file = options.open(&path).await.map_err(reply)?;
        Ok(self.insert(id, Open::File(file)))
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
        Ok(Attrs { id, attrs: stat(&self.local(&path), false).await? })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: stat(&self.local(&path), true).await? })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let metadata = self.file(&handle)?.metadata().await.map_err(reply)?;
        Ok(Attrs { id, attrs: FileAttributes::from(&metadata) })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        set_attrs(&self.local(&path), &attrs).await.map_err(reply)?;
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
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777)).await.map_err(reply)?;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let mut entries = tokio::fs::read_dir(self.local(&path)).await.map_err(reply)?;
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(reply)? {
            let Ok(metadata) = entry.metadata().await else { continue };
            files.push(File::new(entry.file_name().to_string_lossy(), FileAttributes::from(&metadata)));
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
        tokio::fs::remove_file(self.local(&filename)).await.map_err(reply)?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let mut builder = tokio::fs::DirBuilder::new();
        builder.mode(attrs.permissions.unwrap_or(0o777) & 0o7777);
        builder.create(self.local(&path)).await.map_err(reply)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        tokio::fs::remove_dir(self.local(&path)).await.map_err(reply)?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name { id, files: vec![File::dummy(normalize(&path))] })
    }

    async fn rename(&mut self, id: u32, from: String, to: String) -> Result<Status, Self::Error> {
        let (from, to) = (self.local(&from), self.local(&to));
        if tokio::fs::symlink_metadata(&to).await.is_ok() {
            return Err(StatusCode::Failure.with_message("the target exists (use posix-rename)"));
        }
        tokio::fs::rename(from, to).await.map_err(reply)?;
        Ok(ok(id))
    }

    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Result<Packet, Self::Error> {
        if request != POSIX_RENAME {
            return Err(StatusCode::OpUnsupported.into());
        }
        let (from, to): (String, String) = russh_sftp::de::from_bytes(&mut Bytes::from(data))
            .map_err(|_| StatusCode::BadMessage.with_message("expected two paths"))?;
        tokio::fs::rename(self.local(&from), self.local(&to)).await.map_err(reply)?;
        Ok(Packet::Status(ok(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_never_climb_above_the_instance_root() {
        assert_eq!(normalize("/etc/dataroom/config.json"), "/etc/dataroom/config.json");
        assert_eq!(normalize("../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalize("a/./b/../c"), "/a/c");
        assert_eq!(normalize("."), "/");
        assert_eq!(normalize(""), "/");
    }
}
