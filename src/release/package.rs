//! Deployment packages: one zip per function holding the binary as `bootstrap` (mode 0755) at
//! the zip root, which is what SCF's Custom Runtime looks for (<https://cloud.tencent.com/document/product/583/47274>), and the
//! checks that a package is what SCF needs (layout, mode, a static binary with no ELF
//! interpreter, since SCF runs CentOS 7 with glibc 2.17).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

/// What a package holds, as read back from the zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// Entry names in the zip.
    pub entries: Vec<String>,
    /// Unix mode of `bootstrap` (permission bits).
    pub bootstrap_mode: Option<u32>,
    /// Uncompressed size of `bootstrap`.
    pub bootstrap_size: u64,
    /// Size of the zip file.
    pub zip_size: u64,
    /// Whether `bootstrap` is an ELF file with no `PT_INTERP` (needs no dynamic loader).
    pub is_static_elf: bool,
}

/// Writes `out_dir/<function>.zip` with `binary` stored as `bootstrap`, mode 0755.
pub fn package(binary: &Path, function: &str, out_dir: &Path) -> std::io::Result<PathBuf> {
    let bytes = std::fs::read(binary)
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", binary.display())))?;
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join(format!("{function}.zip"));
    let file = std::fs::File::create(&path)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options)
        .map_err(std::io::Error::other)?;
    zip.write_all(&bytes)?;
    zip.finish().map_err(std::io::Error::other)?;
    Ok(path)
}

/// Reads a package back.
pub fn inspect(zip_path: &Path) -> std::io::Result<PackageInfo> {
    let zip_size = std::fs::metadata(zip_path)?.len();
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(zip_path)?).map_err(std::io::Error::other)?;
    let entries: Vec<String> = archive.file_names().map(str::to_string).collect();
    let mut info = PackageInfo {
        entries,
        bootstrap_mode: None,
        bootstrap_size: 0,
        zip_size,
        is_static_elf: false,
    };
    if let Ok(mut bootstrap) = archive.by_name("bootstrap") {
        info.bootstrap_mode = bootstrap.unix_mode().map(|m| m & 0o7777);
        info.bootstrap_size = bootstrap.size();
        let mut bytes = Vec::with_capacity(bootstrap.size() as usize);
        bootstrap.read_to_end(&mut bytes)?;
        info.is_static_elf = elf_has_no_interpreter(&bytes);
    }
    Ok(info)
}

/// True for a 64-bit little-endian ELF file without a `PT_INTERP` program header.
pub fn elf_has_no_interpreter(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * entry_size;
        match bytes.get(at..at + 4) {
            Some(p_type) => u32::from_le_bytes(p_type.try_into().expect("4 bytes")) != PT_INTERP,
            None => false,
        }
    })
}
