//! The `product` worker: imports a CSV file of products.
//!
//! This is the admin guide's running example, so it favours messages an operator can act
//! on over cleverness: every rejected file names the file, the line and what was
//! expected, and a summary lands in the task's result directory for download.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stask_plugin_api::prelude::*;

/// Columns the header must contain; everything else is optional or ignored.
const REQUIRED_COLUMNS: [&str; 2] = ["sku", "name"];

/// How many SKUs the summary lists, enough to recognise the file without bloating it.
const SAMPLE_SIZE: usize = 5;

/// Longest uninterrupted sleep, so that a cancelled task stops promptly even with a
/// large `row_delay_ms`.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

/// Imports products from a CSV file found in the import directory.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProductImport;

impl Worker for ProductImport {
    fn manifest(&self) -> WorkerManifest {
        WorkerManifest::new("product", "Product import")
            // The sandbox: the import directory is all it reads (result files and
            // temporary files need no declaration); no network.
            .reads("${import_dir}")
            .scope("catalog")
            .icon("cart")
            .version(env!("CARGO_PKG_VERSION"))
            .description(
                "Imports products (SKU, name, price, stock) from a CSV file in the import \
                 directory and writes a summary of what was imported.",
            )
            .action(
                ActionSpec::new("import", "Import products")
                    .description(
                        "Reads a products CSV file with a header row containing at least \
                         'sku' and 'name' (optional 'price' and 'stock'). Data: \
                         {\"file\": \"products.csv\"}; relative paths are resolved against \
                         the import_dir setting.",
                    )
                    .scheduled(),
            )
            .setting(
                SettingSpec::string("import_dir", "Import directory")
                    .description(
                        "Directory that relative file paths are resolved against. A relative \
                         directory is itself relative to the stask home (the runner's \
                         working directory).",
                    )
                    .default("imports"),
            )
            .setting(
                SettingSpec::string("delimiter", "Field delimiter")
                    .description("The single ASCII character separating fields, e.g. ',' or ';'.")
                    .default(","),
            )
            .setting(
                SettingSpec::integer("row_delay_ms", "Delay per row (ms)")
                    .description(
                        "Pause after each row, in milliseconds. Only useful to make demos \
                         watchable; cancellation is honoured during the pause.",
                    )
                    .default(0),
            )
    }

    fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error> {
        match action {
            "import" => import(ctx, &input),
            other => Err(Error::new(format!("unknown action '{other}'"))),
        }
    }
}

stask_plugin_api::export_workers![ProductImport];

/// The settings, checked once before the file is touched.
struct Settings {
    import_dir: PathBuf,
    delimiter: u8,
    row_delay: Duration,
}

impl Settings {
    fn from_input(input: &Input) -> Result<Settings, Error> {
        let import_dir = match input.setting("import_dir") {
            None | Some(Value::Null) => PathBuf::from("imports"),
            Some(Value::String(s)) => PathBuf::from(s),
            Some(_) => return Err("setting 'import_dir' must be a string".into()),
        };
        let delimiter = match input.setting("delimiter") {
            None | Some(Value::Null) => b',',
            Some(Value::String(s)) => parse_delimiter(s)?,
            Some(_) => return Err("setting 'delimiter' must be a string".into()),
        };
        let row_delay = match input.setting("row_delay_ms") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                Error::new(format!(
                    "setting 'row_delay_ms' must be a non-negative integer, got {v}"
                ))
            })?,
        };
        Ok(Settings {
            import_dir,
            delimiter,
            row_delay: Duration::from_millis(row_delay),
        })
    }
}

fn parse_delimiter(s: &str) -> Result<u8, Error> {
    match s.as_bytes() {
        // Quotes and line breaks are the CSV syntax itself; as delimiters they would make
        // every file misparse in confusing ways.
        [b'"' | b'\n' | b'\r'] => Err(Error::new(format!(
            "setting 'delimiter' cannot be {s:?}: quotes and line breaks are part of the CSV syntax"
        ))),
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(Error::new(format!(
            "setting 'delimiter' must be exactly one ASCII character (such as ',' or ';'), got {s:?}"
        ))),
    }
}

/// One validated row.
struct Product {
    sku: String,
    line: u64,
    price: Option<f64>,
    stock: Option<u64>,
}

/// Where each column sits in a record.
struct Columns {
    sku: usize,
    name: usize,
    price: Option<usize>,
    stock: Option<usize>,
}

fn import(ctx: &Context<'_>, input: &Input) -> Result<Value, Error> {
    let settings = Settings::from_input(input)?;
    let file = input.data_str("file")?;
    if file.trim().is_empty() {
        return Err("task data field 'file' is empty".into());
    }
    let path = resolve(&settings.import_dir, file);
    let name = display_name(&path);
    check_readable(&path, &settings.import_dir)?;

    let total = count_rows(&path, &settings, &name)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(settings.delimiter)
        .from_reader(open(&path)?);
    let columns = read_header(&mut reader, &settings, &name)?;
    if total == 0 {
        ctx.warn(&format!("**{name}** has a header but no product rows"));
    } else {
        ctx.info(&format!("Importing **{total}** products from {name}"));
    }

    let mut products: Vec<Product> = Vec::new();
    let mut by_sku: HashMap<String, usize> = HashMap::new();
    let mut duplicates = 0u64;
    let mut record = csv::StringRecord::new();
    let mut processed = 0u64;
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(&name, e))?
    {
        ctx.check_cancelled()?;
        processed += 1;
        let product = parse_row(&record, &columns, &name)?;
        match by_sku.get(&product.sku) {
            Some(&index) => {
                duplicates += 1;
                ctx.warn(&format!(
                    "Duplicate SKU **{}** on lines {} and {}: keeping line {}",
                    product.sku, products[index].line, product.line, product.line
                ));
                products[index] = product;
            }
            None => {
                by_sku.insert(product.sku.clone(), products.len());
                products.push(product);
            }
        }
        // The first pass can undercount if the file grows meanwhile; never report more
        // done than in all.
        ctx.progress(processed, total.max(processed), "Processing products...");
        pause(ctx, settings.row_delay)?;
    }

    let total_stock: u64 = products.iter().map(|p| p.stock.unwrap_or(0)).sum();
    let total_value: f64 = products
        .iter()
        .map(|p| p.price.unwrap_or(0.0) * p.stock.unwrap_or(0) as f64)
        .sum();
    let summary = json!({
        "file": path.display().to_string(),
        "imported": products.len(),
        "duplicates": duplicates,
        "total_stock": total_stock,
        // Rounded to cents: float sums otherwise show noise like 1234.5600000000002.
        "total_value": (total_value * 100.0).round() / 100.0,
        "skus_sample": products.iter().take(SAMPLE_SIZE).map(|p| p.sku.as_str()).collect::<Vec<_>>(),
    });
    let summary_path = ctx.result_dir().join("summary.json");
    std::fs::write(&summary_path, serde_json_pretty(&summary)?)
        .map_err(|e| Error::new(format!("could not write '{}': {e}", summary_path.display())))?;
    ctx.info(&format!("Imported **{}** products", products.len()));
    Ok(json!({ "imported": products.len(), "summary_file": "summary.json" }))
}

fn serde_json_pretty(value: &Value) -> Result<String, Error> {
    let mut text = stask_plugin_api::serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

fn resolve(import_dir: &Path, file: &str) -> PathBuf {
    let file = Path::new(file);
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        import_dir.join(file)
    }
}

/// The name used in row-level messages: short, since operators know which file they
/// asked for, and the full path is in the "does not exist" message and the summary.
fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn check_readable(path: &Path, import_dir: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(format!(
            "products file '{}' does not exist (relative paths are resolved against import_dir '{}')",
            path.display(),
            import_dir.display()
        ))),
        Err(e) => Err(Error::new(format!(
            "products file '{}' cannot be read: {e}",
            path.display()
        ))),
        Ok(m) if m.is_dir() => Err(Error::new(format!(
            "products file '{}' is a directory, not a CSV file",
            path.display()
        ))),
        Ok(_) => Ok(()),
    }
}

fn open(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|e| {
        Error::new(format!(
            "products file '{}' cannot be read: {e}",
            path.display()
        ))
    })
}

/// Counts data rows without validating them, so that progress has a total before the
/// first row is processed. Field counts are checked in the second pass, where the error
/// can name the line after the rows before it were reported.
fn count_rows(path: &Path, settings: &Settings, name: &str) -> Result<u64, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(settings.delimiter)
        .flexible(true)
        .from_reader(open(path)?);
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(name, e))?
    {
        rows += 1;
    }
    Ok(rows)
}

fn read_header(
    reader: &mut csv::Reader<File>,
    settings: &Settings,
    name: &str,
) -> Result<Columns, Error> {
    let header = reader.headers().map_err(|e| csv_error(name, e))?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(Error::new(format!(
            "{name} is empty: expected a header row with at least the columns 'sku' and 'name'"
        )));
    }
    let find = |column: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(column))
    };
    for column in REQUIRED_COLUMNS {
        if find(column).is_none() {
            let delimiter = char::from(settings.delimiter);
            let shown: Vec<&str> = header.iter().collect();
            let hint = if header.len() == 1 {
                format!("; is the delimiter setting '{delimiter}' right for this file?")
            } else {
                String::new()
            };
            return Err(Error::new(format!(
                "{name}: missing required column '{column}' (header is: {}){hint}",
                shown.join(&delimiter.to_string())
            )));
        }
    }
    Ok(Columns {
        sku: find("sku").unwrap_or_default(),
        name: find("name").unwrap_or_default(),
        price: find("price"),
        stock: find("stock"),
    })
}

fn parse_row(record: &csv::StringRecord, columns: &Columns, name: &str) -> Result<Product, Error> {
    let line = record.position().map_or(0, |p| p.line());
    let field = |index: usize| record.get(index).unwrap_or("").trim();
    let fail = |what: String| Error::new(format!("{name} line {line}: {what}"));

    let sku = field(columns.sku);
    if sku.is_empty() {
        return Err(fail("sku is empty".into()));
    }
    if field(columns.name).is_empty() {
        return Err(fail(format!("name of product '{sku}' is empty")));
    }
    let price = match columns.price.map(field).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => Some(p),
            Ok(_) => {
                return Err(fail(format!(
                    "price '{text}' must be a non-negative amount"
                )))
            }
            Err(_) => return Err(fail(format!("price '{text}' is not a number"))),
        },
    };
    let stock = match columns.stock.map(field).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(s) => Some(s),
            Err(_) => {
                return Err(fail(format!(
                    "stock '{text}' is not a non-negative integer"
                )))
            }
        },
    };
    Ok(Product {
        sku: sku.to_owned(),
        line,
        price,
        stock,
    })
}

fn csv_error(name: &str, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line());
    match (e.kind(), line) {
        (
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            },
            Some(line),
        ) => Error::new(format!(
            "{name} line {line}: expected {expected_len} fields like the header, found {len}"
        )),
        (csv::ErrorKind::Utf8 { .. }, Some(line)) => Error::new(format!(
            "{name} line {line}: not valid UTF-8 text (save the file as UTF-8)"
        )),
        (csv::ErrorKind::Io(io), _) => Error::new(format!("{name} cannot be read: {io}")),
        _ => Error::new(format!("{name}: {e}")),
    }
}

/// Sleeps for `delay` in short slices so a cancellation is noticed within milliseconds.
fn pause(ctx: &Context<'_>, delay: Duration) -> Result<(), Error> {
    let mut left = delay;
    while !left.is_zero() {
        ctx.check_cancelled()?;
        let slice = left.min(SLEEP_SLICE);
        std::thread::sleep(slice);
        left -= slice;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
