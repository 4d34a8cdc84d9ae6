//! What an uploaded file is, judged from its bytes alone (the client's word for its type is
//! never asked): its media type ([`sniff`]) and, for an image, its size and a thumbnail
//! ([`inspect_image`]); a profile picture made from an uploaded image ([`avatar`]).
//!
//! Images are decoded with the `image` crate under [`limits::MAX_IMAGE_PIXELS`] and a memory
//! cap, checked from the header before any pixel is decoded, so a small file declaring huge
//! dimensions (a decompression bomb) is refused without the memory it asks for. The thumbnail is
//! the first frame (a still of an animated GIF), turned upright by its EXIF orientation, fit in
//! a [`limits::THUMBNAIL_BOX`] px square and re-encoded, which leaves every metadata block
//! (EXIF, GPS, comments) behind. Decoding is slow and blocks: call it on a blocking thread.

use std::io::{BufReader, Cursor, Read, Seek};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::protocol::limits;

/// The media type of anything that is not a format listed here.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Bytes [`sniff`] needs from the start of a file.
pub const SNIFF_BYTES: usize = 64;

/// The media type of a file that starts with `head`: one of the image formats thumbnails are
/// made of, PDF, or [`OCTET_STREAM`]. Nothing sniffed here is ever a type a browser renders as
/// a page or runs (no HTML, no SVG).
pub fn sniff(head: &[u8]) -> &'static str {
    match image::guess_format(head) {
        Ok(ImageFormat::Png) => "image/png",
        Ok(ImageFormat::Jpeg) => "image/jpeg",
        Ok(ImageFormat::Gif) => "image/gif",
        Ok(ImageFormat::WebP) => "image/webp",
        _ if head.starts_with(b"%PDF-") => "application/pdf",
        _ => OCTET_STREAM,
    }
}

/// The `Content-Type` a stored file is served with: a type [`sniff`] gives, and anything
/// else (a record from elsewhere, a future type) as [`OCTET_STREAM`], so a download can never
/// be a page a browser renders.
pub fn servable(media_type: &str) -> &'static str {
    [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
    ]
    .into_iter()
    .find(|t| *t == media_type)
    .unwrap_or(OCTET_STREAM)
}

/// Whether [`sniff`]'s type is an image [`inspect_image`] reads.
pub fn is_image(media_type: &str) -> bool {
    media_type.starts_with("image/")
}

/// An image's size and thumbnail.
#[derive(Debug)]
pub struct Inspected {
    pub width: u32,
    pub height: u32,
    /// The thumbnail's encoded bytes and their media type (JPEG, or PNG to keep transparency).
    pub thumbnail: Vec<u8>,
    pub thumbnail_type: &'static str,
}

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the image is {width}x{height} pixels; images may have at most {} pixels",
        limits::MAX_IMAGE_PIXELS
    )]
    TooLarge { width: u32, height: u32 },
    #[error("the file looks like an image but cannot be read as one: {0}")]
    Unreadable(String),
}

impl From<image::ImageError> for ImageError {
    fn from(e: image::ImageError) -> Self {
        ImageError::Unreadable(e.to_string())
    }
}

/// Memory the decoder may allocate: one frame of [`limits::MAX_IMAGE_PIXELS`] at 8-bit RGBA,
/// with room for the decoder's own buffers.
const MAX_DECODE_BYTES: u64 = limits::MAX_IMAGE_PIXELS * 4 + 64 * 1024 * 1024;

/// Decode the first frame of the image in `reader` (whose bytes [`sniff`] called an image)
/// under the limits, turned upright; with its size as stored (before the rotation).
fn decode(reader: impl Read + Seek) -> Result<(DynamicImage, u32, u32), ImageError> {
    let mut reader = ImageReader::new(BufReader::new(reader))
        .with_guessed_format()
        .map_err(|e| ImageError::Unreadable(e.to_string()))?;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(decode_limits);
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits::MAX_IMAGE_PIXELS {
        return Err(ImageError::TooLarge { width, height });
    }
    // A broken EXIF block costs the rotation, not the upload.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    Ok((image, width, height))
}

/// `image` encoded afresh (no metadata survives): JPEG, or PNG when a pixel is see-through (a
/// GIF frame always has an alpha channel, mostly opaque). The bytes and their media type.
fn encode(image: &DynamicImage) -> Result<(Vec<u8>, &'static str), ImageError> {
    let transparent =
        image.color().has_alpha() && image.to_rgba8().pixels().any(|p| p.0[3] < u8::MAX);
    let mut out = Cursor::new(Vec::new());
    let media_type = if transparent {
        image
            .to_rgba8()
            .write_with_encoder(PngEncoder::new(&mut out))?;
        "image/png"
    } else {
        let encoder = JpegEncoder::new_with_quality(&mut out, 80);
        image.to_rgb8().write_with_encoder(encoder)?;
        "image/jpeg"
    };
    Ok((out.into_inner(), media_type))
}

/// Decode the image in `reader` under the limits and make its thumbnail. See the module docs.
pub fn inspect_image(reader: impl Read + Seek) -> Result<Inspected, ImageError> {
    let (image, width, height) = decode(reader)?;
    let boxed = limits::THUMBNAIL_BOX;
    let thumb = if image.width() > boxed || image.height() > boxed {
        image.thumbnail(boxed, boxed)
    } else {
        image
    };
    let (thumbnail, thumbnail_type) = encode(&thumb)?;
    Ok(Inspected {
        width,
        height,
        thumbnail,
        thumbnail_type,
    })
}

/// A profile picture from the image in `reader`: its centre cropped square, scaled to
/// [`limits::AVATAR_SIZE`] pixels a side, re-encoded. The bytes and their media type.
pub fn avatar(reader: impl Read + Seek) -> Result<(Vec<u8>, &'static str), ImageError> {
    let (image, _, _) = decode(reader)?;
    let side = image.width().min(image.height());
    let square = image.crop_imm(
        (image.width() - side) / 2,
        (image.height() - side) / 2,
        side,
        side,
    );
    let size = limits::AVATAR_SIZE;
    encode(&square.resize_exact(size, size, image::imageops::FilterType::Triangle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), "image/jpeg");
        assert_eq!(sniff(b"GIF89a...."), "image/gif");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"%PDF-1.7"), "application/pdf");
        // HTML and SVG are never recognised as what they are: they are served as bytes.
        assert_eq!(sniff(b"<!doctype html><script>"), OCTET_STREAM);
        assert_eq!(
            sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\">"),
            OCTET_STREAM
        );
        assert_eq!(sniff(b""), OCTET_STREAM);
    }
}
