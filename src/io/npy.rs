//! `.npy` files (NumPy format 1.0, little-endian f32, C order) written in place: the file is
//! sized up front and blocks are written at their offsets, so draws can stream to disk in
//! any order without holding the array in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The header bytes for an f32 array of `shape`, padded to a multiple of 64.
pub fn header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + dict.len() + 1;
    let pad = (64 - total % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// An f32 `.npy` file of fixed shape, written block by block at element offsets.
pub struct NpyWriter {
    file: File,
    path: PathBuf,
    offset: u64,
    len: usize,
}

impl NpyWriter {
    /// Creates (or truncates) `path` for an array of `shape`, zero-filled.
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        let h = header(shape);
        let len: usize = shape.iter().product();
        let mut file = File::create(path).map_err(io_err(path))?;
        file.write_all(&h).map_err(io_err(path))?;
        file.set_len(h.len() as u64 + 4 * len as u64)
            .map_err(io_err(path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            offset: h.len() as u64,
            len,
        })
    }

    /// Opens an existing array of `shape` written by [`NpyWriter::create`] for reading and
    /// writing in place.
    pub fn open(path: &Path, shape: &[usize]) -> Result<Self> {
        Self::open_with(path, shape, true)
    }

    /// Opens an existing array of `shape` written by [`NpyWriter::create`] for reading only
    /// (so a read-only folder can be summarised, plotted and compared).
    pub fn open_read(path: &Path, shape: &[usize]) -> Result<Self> {
        Self::open_with(path, shape, false)
    }

    fn open_with(path: &Path, shape: &[usize], write: bool) -> Result<Self> {
        let h = header(shape);
        let len: usize = shape.iter().product();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        if size != h.len() as u64 + 4 * len as u64 {
            return Err(Error::Invalid(format!(
                "{}: not an f32 array of shape {shape:?}",
                path.display()
            )));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            offset: h.len() as u64,
            len,
        })
    }

    /// Writes `values` starting at flat element index `start`.
    pub fn write_at(&self, start: usize, values: &[f32]) -> Result<()> {
        if start + values.len() > self.len {
            return Err(Error::Invalid(format!(
                "{}: write past the end of the array",
                self.path.display()
            )));
        }
        self.file
            .write_all_at(bytemuck::cast_slice(values), self.offset + 4 * start as u64)
            .map_err(io_err(&self.path))
    }

    /// Reads `out.len()` elements starting at flat index `start`.
    pub fn read_at(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.file
            .read_exact_at(
                bytemuck::cast_slice_mut(out),
                self.offset + 4 * start as u64,
            )
            .map_err(io_err(&self.path))
    }

    /// Flushes to disk.
    pub fn finish(self) -> Result<()> {
        self.file.sync_all().map_err(io_err(&self.path))
    }
}

/// Cuts an array of `shape` (a, b, c) written by [`NpyWriter`] down to (a, `keep`, c): the
/// first `keep` rows of every block along the second axis (draws of every chain, for a run
/// stopped early). Writes a new file beside `path` and renames it over, one block in memory.
pub fn keep_leading(path: &Path, shape: [usize; 3], keep: usize) -> Result<()> {
    let [a, b, c] = shape;
    let keep = keep.min(b);
    let src = NpyWriter::open(path, &shape)?;
    let tmp = path.with_extension("npy.cut");
    let dst = NpyWriter::create(&tmp, &[a, keep, c])?;
    let mut block = vec![0f32; keep * c];
    for i in 0..a {
        src.read_at(i * b * c, &mut block)?;
        dst.write_at(i * keep * c, &block)?;
    }
    dst.finish()?;
    drop(src);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes a whole f32 array.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let w = NpyWriter::create(path, shape)?;
    w.write_at(0, data)?;
    w.finish()
}

/// Reads the header of an f32 `.npy` file written by this module: (shape, the file open
/// at the first value).
fn read_header_open(path: &Path) -> Result<(Vec<usize>, File)> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre).map_err(io_err(path))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(Error::Invalid(format!(
            "{}: not a .npy file",
            path.display()
        )));
    }
    let hl = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    let mut h = vec![0u8; hl];
    f.read_exact(&mut h).map_err(io_err(path))?;
    let h = String::from_utf8_lossy(&h);
    if !h.contains("'<f4'") {
        return Err(Error::Invalid(format!(
            "{}: only little-endian f32 is read",
            path.display()
        )));
    }
    let s = h
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or("");
    let shape: Vec<usize> = s.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    f.seek(SeekFrom::Start(10 + hl as u64))
        .map_err(io_err(path))?;
    Ok((shape, f))
}

/// The shape of an f32 `.npy` file written by this module, without reading its values.
pub fn read_shape(path: &Path) -> Result<Vec<usize>> {
    Ok(read_header_open(path)?.0)
}

/// Reads an f32 `.npy` file written by this module: (shape, data).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let (shape, mut f) = read_header_open(path)?;
    let n: usize = shape.iter().product();
    let mut data = vec![0f32; n];
    f.read_exact(bytemuck::cast_slice_mut(&mut data))
        .map_err(io_err(path))?;
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aligned_header() {
        let dir = std::env::temp_dir().join(format!("gpsamp-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let w = NpyWriter::create(&p, &[2, 3, 4]).unwrap();
        let v: Vec<f32> = (0..12).map(|i| i as f32).collect();
        w.write_at(12, &v).unwrap();
        w.finish().unwrap();
        let (shape, data) = read_f32(&p).unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(&data[12..], &v[..]);
        assert!(data[..12].iter().all(|&x| x == 0.0));
        assert_eq!(header(&[5]).len() % 64, 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
