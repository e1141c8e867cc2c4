//! NumPy `.npz` archives of little-endian float arrays (what `numpy.savez` and `savez_compressed` write),
//! for reading other tools' FID statistics. Declared sizes are checked against the bytes present before
//! anything is allocated from them.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

/// One array, converted to f64, in C (row-major) order.
#[derive(Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// The arrays of an .npz archive, by name without `.npy`.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Array>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a zip archive ({e})"))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| format!("zip entry {i}: {e}"))?;
        let name = entry.name().map_err(|e| format!("zip entry {i}: {e}"))?.to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let declared = entry.size();
        if declared > entry.compressed_size().saturating_mul(crate::MAX_INFLATE_RATIO) + 1024
            || declared > bytes.len() as u64 * crate::MAX_INFLATE_RATIO
        {
            return Err(format!(
                "'{name}' declares {declared} bytes, more than its data can hold"
            ));
        }
        let mut raw = Vec::new();
        entry
            .take(declared + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format!("'{name}': {e}"))?;
        if raw.len() as u64 != declared {
            return Err(format!(
                "'{name}' holds {} bytes, not the {declared} it declares",
                raw.len()
            ));
        }
        out.insert(key.to_string(), parse_npy(&raw).map_err(|e| format!("'{name}': {e}"))?);
    }
    Ok(out)
}

/// One `.npy` array: magic, version, a header dict, then the values.
pub fn parse_npy(bytes: &[u8]) -> Result<Array, String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or("not an .npy array (bad magic)")?;
    let (len_bytes, rest) = match rest {
        [1, _, rest @ ..] => (2, rest),
        [2 | 3, _, rest @ ..] => (4, rest),
        _ => return Err("unsupported .npy version".into()),
    };
    if rest.len() < len_bytes {
        return Err("truncated .npy header".into());
    }
    let mut len = [0u8; 4];
    len[..len_bytes].copy_from_slice(&rest[..len_bytes]);
    let header_len = u32::from_le_bytes(len) as usize;
    let rest = &rest[len_bytes..];
    if rest.len() < header_len {
        return Err("truncated .npy header".into());
    }
    let header = std::str::from_utf8(&rest[..header_len]).map_err(|_| "the .npy header is not text")?;
    let data = &rest[header_len..];
    let descr = dict_value(header, "descr")?;
    let width = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f8" => 8,
        "<f4" => 4,
        other => return Err(format!("dtype {other} is not supported (only little-endian f4 or f8)")),
    };
    if dict_value(header, "fortran_order")? != "False" {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = dict_value(header, "shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape {shape_text}"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("the shape overflows")?;
    if count.checked_mul(width) != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} needs {count} values, the data holds {} bytes",
            data.len()
        ));
    }
    let data = if width == 8 {
        data.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    } else {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect()
    };
    Ok(Array { shape, data })
}

/// The text of `'key': value` in the header dict, up to the next top-level comma or brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let at = header
        .find(&format!("'{key}':"))
        .ok_or_else(|| format!("the .npy header has no '{key}'"))?;
    let value = header[at + key.len() + 3..].trim_start();
    let mut depth = 0usize;
    for (i, c) in value.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' | '}' if depth == 0 => return Ok(value[..i].trim()),
            _ => {}
        }
    }
    Err(format!("the .npy header's '{key}' is not closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_npy_arrays_and_refuses_lies() {
        let v: Vec<u8> = [1.5f64, -2.0, 3.25, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let a = parse_npy(&npy("<f8", "(2, 2)", &v)).unwrap();
        assert_eq!(a.shape, [2, 2]);
        assert_eq!(a.data, [1.5, -2.0, 3.25, 4.0]);
        let f: Vec<u8> = [0.5f32, 7.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(parse_npy(&npy("<f4", "(2,)", &f)).unwrap().data, [0.5, 7.0]);
        assert_eq!(
            parse_npy(&npy("<f8", "()", &v[..8])).unwrap().shape,
            Vec::<usize>::new()
        );
        for (bytes, why) in [
            (npy("<f8", "(2, 3)", &v), "needs 6 values"),
            (npy("<f8", "(99999999999, 99999999999, 99999)", &v), "overflows"),
            (npy(">f8", "(4,)", &v), "not supported"),
            (npy("<i8", "(4,)", &v), "not supported"),
            (npy("<f8", "(4,)", &v)[..9].to_vec(), "truncated"),
            (b"PK\x03\x04".to_vec(), "bad magic"),
        ] {
            let e = parse_npy(&bytes).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn reads_stored_and_deflated_archives() {
        use std::io::Write;
        let mu: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        for method in [zip::CompressionMethod::Stored, zip::CompressionMethod::Deflated] {
            let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default().compression_method(method);
            w.start_file("mu.npy", opts).unwrap();
            w.write_all(&npy("<f8", "(2,)", &mu)).unwrap();
            w.start_file("notes.txt", opts).unwrap();
            w.write_all(b"ignored").unwrap();
            let bytes = w.finish().unwrap().into_inner();
            let arrays = parse(&bytes).unwrap();
            assert_eq!(arrays.keys().collect::<Vec<_>>(), ["mu"]);
            assert_eq!(arrays["mu"].data, [1.0, 2.0]);
            assert!(parse(&bytes[..bytes.len() - 10]).unwrap_err().contains("not a zip"));
        }
    }
}
