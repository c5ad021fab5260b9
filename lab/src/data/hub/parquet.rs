//! Reading the Hub's parquet files (and writing small ones with the same schemas, for tests and
//! offline fixtures), with the `parquet` crate's row API (no arrow).
//!
//! Schemas, as the `datasets` library writes them through pyarrow:
//!
//! ```text
//! translation sets:   optional group translation { optional binary de (STRING); optional binary en (STRING); }
//! VQA 2.0:            optional binary question (STRING); optional int64 question_id; optional int64 image_id;
//!                     optional group answers (LIST) { repeated group list { optional group element {
//!                         optional binary answer (STRING); optional binary answer_confidence (STRING);
//!                         optional int64 answer_id; } } }
//!                     optional binary multiple_choice_answer / question_type / answer_type (STRING);
//!                     optional group image { optional binary bytes; optional binary path (STRING); }  (Image feature)
//! ```
//!
//! Rows are streamed (one row group at a time, only the needed columns); a progress bar counts
//! rows for files over [`PROGRESS_MIN_ROWS`] rows. A file that is not parquet (truncated or
//! corrupt download) and a missing or mistyped column are errors naming the file and column.
use anyhow::{anyhow, bail, Context, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::{Type, TypePtr};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Files with at least this many rows get a progress bar (on a terminal).
pub const PROGRESS_MIN_ROWS: i64 = 200_000;

/// One VQA 2.0 question with its annotations, as the Hub's parquet rows hold it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VqaV2Example {
    pub question_id: i64,
    /// COCO image id.
    pub image_id: i64,
    pub question: String,
    /// The annotators' answers (10 in VQA 2.0), raw (not normalised), in annotator order.
    pub answers: Vec<String>,
    /// `yes` / `maybe` / `no` per answer.
    pub answer_confidences: Vec<String>,
    /// The most common answer (the dataset's `multiple_choice_answer`).
    pub multiple_choice_answer: Option<String>,
    pub question_type: Option<String>,
    /// `yes/no`, `number` or `other`.
    pub answer_type: Option<String>,
    /// Encoded image (JPEG/PNG bytes of the `image` column), when the repository has images
    /// and they were asked for.
    pub image: Option<Vec<u8>>,
}

/// Opens a parquet file; an unreadable footer is reported as a truncated or corrupt file.
pub fn open_parquet(path: &Path) -> Result<SerializedFileReader<File>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    SerializedFileReader::new(f).map_err(|e| {
        anyhow!(
            "{}: not a readable parquet file ({e}); the file is truncated or corrupt: delete it (and its blob in the Hub cache) and prepare again",
            path.display()
        )
    })
}

/// Number of rows in a parquet file, from its footer.
pub fn parquet_rows(path: &Path) -> Result<usize> {
    Ok(open_parquet(path)?.metadata().file_metadata().num_rows().max(0) as usize)
}

fn column_names(root: &Type) -> String {
    root.get_fields().iter().map(|f| f.name().to_string()).collect::<Vec<_>>().join(", ")
}

/// The top-level column `name` of the file's schema, or an error naming it and the columns
/// the file has.
fn top_column(root: &Type, name: &str, path: &Path) -> Result<TypePtr> {
    root.get_fields().iter().find(|f| f.name() == name).cloned().ok_or_else(|| {
        anyhow!("{}: schema mismatch: no column `{name}` (columns: {})", path.display(), column_names(root))
    })
}

fn is_string_leaf(t: &Type) -> bool {
    t.is_primitive() && t.get_physical_type() == parquet::basic::Type::BYTE_ARRAY
}

fn is_int_leaf(t: &Type) -> bool {
    t.is_primitive() && matches!(t.get_physical_type(), parquet::basic::Type::INT64 | parquet::basic::Type::INT32)
}

/// Streams the rows of `path` projected on `columns` (top-level names, each checked to exist),
/// calling `f` on each; a progress bar labelled `label` for big files.
fn for_each_row(path: &Path, columns: &[TypePtr], label: &str, progress: bool, mut f: impl FnMut(&Row) -> Result<()>) -> Result<usize> {
    let reader = open_parquet(path)?;
    let total = reader.metadata().file_metadata().num_rows();
    let projection = Type::group_type_builder("schema").with_fields(columns.to_vec()).build()?;
    let bar = if progress && total >= PROGRESS_MIN_ROWS {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} rows ({per_sec}, {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(label.to_string());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut n = 0usize;
    for rg in 0..reader.num_row_groups() {
        let group = reader.get_row_group(rg).map_err(|e| anyhow!("{}: row group {rg}: {e} (corrupt file?)", path.display()))?;
        let rows = group.get_row_iter(Some(projection.clone())).map_err(|e| anyhow!("{}: row group {rg}: {e}", path.display()))?;
        for row in rows {
            let row = row.map_err(|e| anyhow!("{}: row {n}: {e} (truncated or corrupt file?)", path.display()))?;
            f(&row).with_context(|| format!("{}: row {n}", path.display()))?;
            n += 1;
            if n % 10_000 == 0 {
                bar.set_position(n as u64);
            }
        }
    }
    bar.finish_and_clear();
    Ok(n)
}

fn field<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| f)
}

fn opt_string(f: Option<&Field>) -> Result<Option<String>> {
    match f {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s.clone())),
        Some(Field::Bytes(b)) => Ok(Some(String::from_utf8_lossy(b.data()).into_owned())),
        Some(other) => bail!("expected a string, found {other}"),
    }
}

fn opt_long(f: Option<&Field>) -> Result<Option<i64>> {
    match f {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Long(v)) => Ok(Some(*v)),
        Some(Field::Int(v)) => Ok(Some(*v as i64)),
        Some(other) => bail!("expected an integer, found {other}"),
    }
}

/// Streams the sentence pairs of a translation parquet file: for each row, the fields `src`
/// and `tgt` of the struct column `column`, passed to `f(src, tgt)`. Rows with a null side are
/// an error naming the row. Returns the number of rows.
pub fn for_each_translation(path: &Path, column: &str, src: &str, tgt: &str, progress: bool, mut f: impl FnMut(&str, &str) -> Result<()>) -> Result<usize> {
    let reader = open_parquet(path)?;
    let root = reader.metadata().file_metadata().schema_descr().root_schema_ptr();
    let col = top_column(&root, column, path)?;
    if !col.is_group() {
        bail!("{}: schema mismatch: column `{column}` is not a struct {{{src}, {tgt}}}", path.display());
    }
    for lang in [src, tgt] {
        match col.get_fields().iter().find(|f| f.name() == lang) {
            Some(t) if is_string_leaf(t) => {}
            Some(_) => bail!("{}: schema mismatch: `{column}.{lang}` is not a string", path.display()),
            None => bail!("{}: schema mismatch: column `{column}` has no field `{lang}` (fields: {})", path.display(), column_names(&col)),
        }
    }
    drop(reader);
    let label = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    for_each_row(path, &[col], &label, progress, |row| {
        let Some(Field::Group(pair)) = field(row, column) else { bail!("`{column}` is null") };
        let s = opt_string(field(pair, src))?.with_context(|| format!("`{column}.{src}` is null"))?;
        let t = opt_string(field(pair, tgt))?.with_context(|| format!("`{column}.{tgt}` is null"))?;
        f(&s, &t)
    })
}

/// The VQA 2.0 columns read, with whether each is required.
pub const VQA_COLUMNS: [(&str, bool); 8] = [
    ("question_id", true),
    ("image_id", true),
    ("question", true),
    ("answers", true),
    ("multiple_choice_answer", false),
    ("question_type", false),
    ("answer_type", false),
    ("image", false),
];

/// Reads the VQA 2.0 rows of a parquet file (see the module doc for the schema). `images`:
/// also read the `image` column's bytes (absent column: `None`). Missing required columns and
/// wrongly typed ones are errors naming the column.
pub fn read_vqa_v2(path: &Path, images: bool, progress: bool) -> Result<Vec<VqaV2Example>> {
    let mut out = Vec::new();
    for_each_vqa_v2(path, images, progress, |ex| {
        out.push(ex);
        Ok(())
    })?;
    Ok(out)
}

/// [`read_vqa_v2`] streamed: `f` gets each row in file order (so a caller can keep one copy of
/// an image that many questions share).
pub fn for_each_vqa_v2(path: &Path, images: bool, progress: bool, mut f: impl FnMut(VqaV2Example) -> Result<()>) -> Result<usize> {
    let reader = open_parquet(path)?;
    let root = reader.metadata().file_metadata().schema_descr().root_schema_ptr();
    let mut cols = Vec::new();
    for (name, required) in VQA_COLUMNS {
        if name == "image" && !images {
            continue;
        }
        match root.get_fields().iter().find(|f| f.name() == name) {
            Some(t) => {
                let ok = match name {
                    "question_id" | "image_id" => is_int_leaf(t),
                    "answers" | "image" => t.is_group(),
                    _ => is_string_leaf(t),
                };
                if !ok {
                    bail!("{}: schema mismatch: column `{name}` has type {:?}", path.display(), t);
                }
                cols.push(t.clone());
            }
            None if required => bail!("{}: schema mismatch: no column `{name}` (columns: {})", path.display(), column_names(&root)),
            None => {}
        }
    }
    drop(reader);
    let label = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    for_each_row(path, &cols, &label, progress, |row| {
        let mut ex = VqaV2Example {
            question_id: opt_long(field(row, "question_id")).context("question_id")?.context("`question_id` is null")?,
            image_id: opt_long(field(row, "image_id")).context("image_id")?.context("`image_id` is null")?,
            question: opt_string(field(row, "question")).context("question")?.context("`question` is null")?,
            multiple_choice_answer: opt_string(field(row, "multiple_choice_answer")).context("multiple_choice_answer")?,
            question_type: opt_string(field(row, "question_type")).context("question_type")?,
            answer_type: opt_string(field(row, "answer_type")).context("answer_type")?,
            ..Default::default()
        };
        match field(row, "answers") {
            None | Some(Field::Null) => {}
            Some(Field::ListInternal(list)) => {
                for el in list.elements() {
                    let Field::Group(a) = el else { bail!("`answers` element is not a struct: {el}") };
                    ex.answers.push(opt_string(field(a, "answer")).context("answers.answer")?.context("`answers.answer` is null")?);
                    ex.answer_confidences.push(opt_string(field(a, "answer_confidence")).context("answers.answer_confidence")?.unwrap_or_default());
                }
            }
            Some(other) => bail!("schema mismatch: `answers` is not a list: {other}"),
        }
        if images {
            ex.image = match field(row, "image") {
                None | Some(Field::Null) => None,
                Some(Field::Group(img)) => match field(img, "bytes") {
                    Some(Field::Bytes(b)) => Some(b.data().to_vec()),
                    Some(Field::Null) | None => None,
                    Some(other) => bail!("schema mismatch: `image.bytes` is not binary: {other}"),
                },
                Some(other) => bail!("schema mismatch: `image` is not a struct {{bytes, path}}: {other}"),
            };
        }
        f(ex)
    })
}

// ---------------------------------------------------------------------------
// Writing files with the Hub's schemas (fixtures for tests and offline demos)

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

fn writer(path: &Path, schema: &str) -> Result<SerializedFileWriter<File>> {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema)?);
    let props = Arc::new(WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build());
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(SerializedFileWriter::new(f, schema, props)?)
}

/// Writes `pairs` as a translation parquet file: one struct column `column` with string fields
/// `langs.0` and `langs.1` (the first element of each pair goes to `langs.0`).
pub fn write_translation_parquet(path: &Path, column: &str, langs: (&str, &str), pairs: &[(String, String)]) -> Result<()> {
    let schema = format!(
        "message schema {{ optional group {column} {{ optional binary {} (STRING); optional binary {} (STRING); }} }}",
        langs.0, langs.1
    );
    let mut w = writer(path, &schema)?;
    let mut rg = w.next_row_group()?;
    for side in 0..2 {
        let mut col = rg.next_column()?.context("missing column writer")?;
        let values: Vec<ByteArray> = pairs.iter().map(|p| ByteArray::from(if side == 0 { p.0.as_str() } else { p.1.as_str() })).collect();
        let def = vec![2i16; values.len()];
        col.typed::<ByteArrayType>().write_batch(&values, Some(&def), None)?;
        col.close()?;
    }
    rg.close()?;
    w.close()?;
    Ok(())
}

/// Writes VQA 2.0 rows with the Hub's schema (`image` column only when `with_images`; an
/// example without image bytes gets a null image).
pub fn write_vqa_v2_parquet(path: &Path, rows: &[VqaV2Example], with_images: bool) -> Result<()> {
    let image = if with_images { "optional group image { optional binary bytes; optional binary path (STRING); }" } else { "" };
    let schema = format!(
        "message schema {{ optional binary question_type (STRING); optional binary multiple_choice_answer (STRING); \
         optional group answers (LIST) {{ repeated group list {{ optional group element {{ optional binary answer (STRING); \
         optional binary answer_confidence (STRING); optional int64 answer_id; }} }} }} optional int64 image_id; \
         optional binary answer_type (STRING); optional int64 question_id; optional binary question (STRING); {image} }}"
    );
    let mut w = writer(path, &schema)?;
    let mut rg = w.next_row_group()?;
    let strings = |get: &dyn Fn(&VqaV2Example) -> Option<String>| -> (Vec<ByteArray>, Vec<i16>) {
        let mut v = Vec::new();
        let mut d = Vec::new();
        for r in rows {
            match get(r) {
                Some(s) => {
                    v.push(ByteArray::from(s.as_str()));
                    d.push(1);
                }
                None => d.push(0),
            }
        }
        (v, d)
    };
    // answers.list.element.{answer, answer_confidence, answer_id}: max definition level 4,
    // repetition level 1; an empty list has definition level 1.
    let list_levels = || -> (Vec<i16>, Vec<i16>) {
        let (mut d, mut r) = (Vec::new(), Vec::new());
        for ex in rows {
            if ex.answers.is_empty() {
                d.push(1);
                r.push(0);
            }
            for i in 0..ex.answers.len() {
                d.push(4);
                r.push(if i == 0 { 0 } else { 1 });
            }
        }
        (d, r)
    };
    let write_strings = |col: &mut parquet::file::writer::SerializedColumnWriter<'_>, (v, d): (Vec<ByteArray>, Vec<i16>)| -> Result<()> {
        col.typed::<ByteArrayType>().write_batch(&v, Some(&d), None)?;
        Ok(())
    };
    let mut col = rg.next_column()?.context("question_type")?;
    write_strings(&mut col, strings(&|r| r.question_type.clone()))?;
    col.close()?;
    let mut col = rg.next_column()?.context("multiple_choice_answer")?;
    write_strings(&mut col, strings(&|r| r.multiple_choice_answer.clone()))?;
    col.close()?;
    let (d, r) = list_levels();
    let mut col = rg.next_column()?.context("answers.answer")?;
    let v: Vec<ByteArray> = rows.iter().flat_map(|ex| ex.answers.iter().map(|a| ByteArray::from(a.as_str()))).collect();
    col.typed::<ByteArrayType>().write_batch(&v, Some(&d), Some(&r))?;
    col.close()?;
    let mut col = rg.next_column()?.context("answers.answer_confidence")?;
    let v: Vec<ByteArray> = rows
        .iter()
        .flat_map(|ex| (0..ex.answers.len()).map(|i| ByteArray::from(ex.answer_confidences.get(i).map(String::as_str).unwrap_or("yes"))))
        .collect();
    col.typed::<ByteArrayType>().write_batch(&v, Some(&d), Some(&r))?;
    col.close()?;
    let mut col = rg.next_column()?.context("answers.answer_id")?;
    let v: Vec<i64> = rows.iter().flat_map(|ex| 1..=ex.answers.len() as i64).collect();
    col.typed::<Int64Type>().write_batch(&v, Some(&d), Some(&r))?;
    col.close()?;
    let mut col = rg.next_column()?.context("image_id")?;
    col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.image_id).collect::<Vec<_>>(), Some(&vec![1; rows.len()]), None)?;
    col.close()?;
    let mut col = rg.next_column()?.context("answer_type")?;
    write_strings(&mut col, strings(&|r| r.answer_type.clone()))?;
    col.close()?;
    let mut col = rg.next_column()?.context("question_id")?;
    col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.question_id).collect::<Vec<_>>(), Some(&vec![1; rows.len()]), None)?;
    col.close()?;
    let mut col = rg.next_column()?.context("question")?;
    write_strings(&mut col, strings(&|r| Some(r.question.clone())))?;
    col.close()?;
    if with_images {
        // image.bytes / image.path: definition 2 = present, 0 = null image
        let d: Vec<i16> = rows.iter().map(|r| if r.image.is_some() { 2 } else { 0 }).collect();
        let mut col = rg.next_column()?.context("image.bytes")?;
        let v: Vec<ByteArray> = rows.iter().filter_map(|r| r.image.clone().map(ByteArray::from)).collect();
        col.typed::<ByteArrayType>().write_batch(&v, Some(&d), None)?;
        col.close()?;
        let mut col = rg.next_column()?.context("image.path")?;
        let v: Vec<ByteArray> = rows.iter().filter(|r| r.image.is_some()).map(|r| ByteArray::from(format!("{}.jpg", r.image_id).as_str())).collect();
        col.typed::<ByteArrayType>().write_batch(&v, Some(&d), None)?;
        col.close()?;
    }
    rg.close()?;
    w.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_round_trip_and_schema_errors_name_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let pairs = vec![("Guten Morgen.".to_string(), "Good morning.".to_string()), ("Ja.".into(), "Yes.".into())];
        write_translation_parquet(&p, "translation", ("de", "en"), &pairs).unwrap();
        assert_eq!(parquet_rows(&p).unwrap(), 2);
        let mut got = Vec::new();
        let n = for_each_translation(&p, "translation", "en", "de", false, |s, t| {
            got.push((s.to_string(), t.to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(got, vec![("Good morning.".to_string(), "Guten Morgen.".to_string()), ("Yes.".into(), "Ja.".into())]);
        let err = for_each_translation(&p, "translation", "de", "fr", false, |_, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("`fr`") && err.contains("t.parquet"), "{err}");
        let err = for_each_translation(&p, "pairs", "de", "en", false, |_, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("`pairs`") && err.contains("translation"), "{err}");
    }

    #[test]
    fn vqa_round_trip_with_and_without_images() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.parquet");
        let rows = vec![
            VqaV2Example {
                question_id: 262148000,
                image_id: 262148,
                question: "Where is he looking?".into(),
                answers: (0..10).map(|i| if i < 7 { "down".to_string() } else { "table".to_string() }).collect(),
                answer_confidences: vec!["yes".into(); 10],
                multiple_choice_answer: Some("down".into()),
                question_type: Some("none of the above".into()),
                answer_type: Some("other".into()),
                image: Some(vec![0xff, 0xd8, 0xff, 0x00, 0x01]),
            },
            VqaV2Example { question_id: 2, image_id: 9, question: "Is it?".into(), answers: vec![], ..Default::default() },
        ];
        write_vqa_v2_parquet(&p, &rows, true).unwrap();
        assert_eq!(read_vqa_v2(&p, true, false).unwrap(), rows);
        let no_images = read_vqa_v2(&p, false, false).unwrap();
        assert!(no_images.iter().all(|r| r.image.is_none()));
        assert_eq!(no_images[0].answers, rows[0].answers);
    }

    #[test]
    fn truncated_file_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        write_translation_parquet(&p, "translation", ("de", "en"), &[("a".into(), "b".into())]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = parquet_rows(&p).unwrap_err().to_string();
        assert!(err.contains("t.parquet") && err.contains("truncated or corrupt"), "{err}");
    }
}
