//! PNG output: the SVG rasterised by resvg, pure Rust, no system libraries.
//!
//! Text needs fonts. The system's fonts are loaded once per process; when
//! the machine has none (minimal CI images) resvg leaves text out instead of
//! failing, so the PNG still shows every bar and marker, and
//! [`fonts_available`] lets the caller say how to get the labels back.

use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg::{fontdb, Options, Tree};

/// Pictures larger than this many pixels are refused rather than risking
/// gigabytes of memory (a 50-connection picture is about 3 million).
const MAX_PIXELS: u64 = 100_000_000;

/// Families tried, in order, for the SVG's generic `sans-serif` fallback.
const SANS_FAMILIES: [&str; 4] = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"];

/// The system's fonts, with `sans-serif` and `serif` mapped to a family that
/// exists, since resvg's last resort for unknown families is `serif` and
/// fontdb's default for it (Times New Roman) is rarely installed on Linux.
fn fonts() -> Arc<fontdb::Database> {
    static FONTS: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = fontdb::Database::new();
            db.load_system_fonts();
            let installed = |name: &str| db.faces().any(|f| f.families.iter().any(|(n, _)| n == name));
            let family = SANS_FAMILIES
                .iter()
                .find(|f| installed(f))
                .map(|f| f.to_string())
                .or_else(|| db.faces().next().and_then(|f| f.families.first()).map(|(n, _)| n.clone()));
            if let Some(family) = family {
                db.set_sans_serif_family(family.clone());
                db.set_serif_family(family);
            }
            Arc::new(db)
        })
        .clone()
}

/// Whether PNG text will be drawn: false on a machine without any font
/// (install `fonts-dejavu-core` on Debian).
pub fn fonts_available() -> bool {
    !fonts().is_empty()
}

/// Rasterises `svg` (as [`super::render_svg`] makes it) at its own size,
/// on white, and encodes it as PNG.
pub fn render_png(svg: &str) -> Result<Vec<u8>> {
    let opts = Options { fontdb: fonts(), ..Options::default() };
    let tree = Tree::from_str(svg, &opts).context("the SVG could not be read back to make the PNG")?;
    let size = tree.size().to_int_size();
    let (w, h) = (size.width(), size.height());
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(anyhow!(
            "the picture is {w}×{h} pixels, too large for a PNG: draw fewer connections (--max-conns, --port, --conn) or use the SVG"
        ));
    }
    let mut pixmap = Pixmap::new(w, h).ok_or_else(|| anyhow!("cannot allocate a {w}×{h} PNG"))?;
    pixmap.fill(Color::WHITE);
    resvg::render(&tree, Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("PNG encoding failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_at_the_svg_size() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="10" height="10" fill="#f00"/><text x="2" y="18" font-size="8" font-family="nonexistent">hi</text></svg>"##;
        let png = render_png(svg).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 40);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 20);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(render_png("not svg").is_err());
        assert!(render_png(r#"<svg xmlns="http://www.w3.org/2000/svg" width="0" height="0"/>"#).is_err());
    }
}
