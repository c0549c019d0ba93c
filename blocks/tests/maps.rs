//! Block maps: written from a checked source, streamed back block by block with the same bytes,
//! resumed after a height, and refused when they or the files they name are damaged.

use std::path::{Path, PathBuf};

use blocks::blk::Start;
use blocks::map::{BlockMap, Extent};
use blocks::{Block, BlockStream, HeightRange, Source};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks").join(name)
}

fn error(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.unwrap_err())
}

/// The map of `source`'s `range` written to `dir/blocks.map`, and the blocks it gave `each`.
fn write_map(source: &Source, range: HeightRange, dir: &Path) -> (PathBuf, Extent, Vec<Block>) {
    let path = dir.join("blocks.map");
    let mut seen = Vec::new();
    let mut out = std::fs::File::create(&path).unwrap();
    let extent = blocks::write_map(source, range, Start::Genesis, &mut out, |b| seen.push(b.clone())).unwrap();
    (path, extent, seen)
}

fn streamed(path: &Path, after: Option<u32>) -> Vec<Block> {
    let Source::Map(map) = Source::detect(path).unwrap() else { panic!("{} is not detected as a map", path.display()) };
    BlockStream::Mapped(map).after(after).unwrap().collect::<anyhow::Result<_>>().unwrap()
}

#[test]
fn a_map_of_block_files_streams_the_same_blocks_and_resumes_after_a_height() {
    let temp = tempfile::tempdir().unwrap();
    let source = Source::detect(&testdata("mainnet-0-589.blk")).unwrap();
    let range = HeightRange { from: Some(100), to: Some(400) };
    let (path, extent, seen) = write_map(&source, range, temp.path());
    let whole = source.read(range, Start::Genesis).unwrap();
    assert_eq!(seen, whole, "the writer hands over every block it checked, in order");
    assert_eq!((extent.first, extent.last, extent.count), (Some(100), Some(400), 301));
    assert_eq!(extent.bytes, whole.iter().map(|b| b.payload.len() as u64).sum::<u64>());
    assert_eq!(streamed(&path, None), whole);
    assert_eq!(streamed(&path, Some(399)), whole[300..], "resumed after 399: block 400 only");
    assert!(streamed(&path, Some(400)).is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().take(4).collect::<Vec<_>>()[..3], ["memrepro-block-map 1", &format!("dir {}", testdata("").display()).trim_end_matches('/'), "xor 0000000000000000"]);
    assert_eq!(text.lines().filter(|l| l.starts_with("block ")).count(), 301);
}

#[test]
fn a_map_of_height_bin_files_is_read_from_another_directory_when_told() {
    let (files, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Source::detect(&testdata("mainnet-0-589.blk")).unwrap().read(HeightRange { from: Some(0), to: Some(20) }, Start::Genesis).unwrap();
    for block in &whole {
        std::fs::write(files.path().join(format!("{}.bin", block.height)), &block.payload).unwrap();
    }
    let (path, extent, _) = write_map(&Source::detect(files.path()).unwrap(), HeightRange::default(), elsewhere.path());
    assert_eq!(extent.count, 21);
    assert_eq!(streamed(&path, None), whole);
    // As a container sees it: the files mounted somewhere else.
    let moved = elsewhere.path().join("mounted");
    std::fs::rename(files.path(), &moved).unwrap();
    let map = BlockMap::open(&path).unwrap();
    let err = error(map.blocks(None).unwrap().collect::<anyhow::Result<Vec<_>>>());
    assert!(err.starts_with(&format!("opening {}", files.path().join("0.bin").display())), "{err}");
    let blocks: Vec<Block> = BlockStream::Mapped(map.with_dir(moved)).after(None).unwrap().collect::<anyhow::Result<_>>().unwrap();
    assert_eq!(blocks, whole);
}

#[test]
fn a_block_that_changed_after_the_map_stops_the_stream_there() {
    let temp = tempfile::tempdir().unwrap();
    let copy = temp.path().join("chain.blk");
    std::fs::copy(testdata("mainnet-0-589.blk"), &copy).unwrap();
    let (path, _, whole) = write_map(&Source::detect(&copy).unwrap(), HeightRange { from: Some(0), to: Some(9) }, temp.path());
    // Block 5's nonce, in place: the file still holds a block there, but not the one mapped.
    let offset: usize = std::fs::read_to_string(&path).unwrap().lines().find(|l| l.starts_with("block 5 ")).unwrap().split(' ').nth(4).unwrap().parse().unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[offset + 76] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    let Source::Map(map) = Source::detect(&path).unwrap() else { panic!() };
    let results: Vec<anyhow::Result<Block>> = BlockStream::Mapped(map).after(None).unwrap().collect();
    assert_eq!(results.len(), 6, "blocks 0..=4, then the error, then nothing");
    assert_eq!(results[..5].iter().map(|r| r.as_ref().unwrap().clone()).collect::<Vec<_>>(), whole[..5]);
    let err = format!("{:#}", results[5].as_ref().unwrap_err());
    assert!(err.contains("block 5 (") && err.contains("it changed since the map was written"), "{err}");
}

#[test]
fn damaged_maps_are_refused_with_the_line() {
    let temp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_map(&Source::detect(&testdata("mainnet-0-589.blk")).unwrap(), HeightRange { from: Some(0), to: Some(3) }, temp.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let damaged = |edit: &dyn Fn(&mut Vec<String>)| {
        let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edit(&mut lines);
        let bad = temp.path().join("bad.map");
        std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
        error(BlockMap::open(&bad))
    };
    let bad = temp.path().join("bad.map").display().to_string();
    assert_eq!(damaged(&|l| l.swap(5, 6)), format!("{bad} line 7: height 1 after height 2 (heights ascend)"));
    assert_eq!(damaged(&|l| l[5] = l[5].replacen(" 0 ", " 3 ", 1)), format!("{bad} line 6: file 3 is not named (the map names 1 files)"));
    assert_eq!(damaged(&|l| l[2] = "xor 00".into()), format!("{bad} line 3: `xor` takes 16 hex digits"));
    assert_eq!(damaged(&|l| l.truncate(4)), format!("{bad}: a block map without blocks"));
    assert!(damaged(&|l| l[6] = "block 2 zz 0 1 2".into()).starts_with(&format!("{bad} line 7: ")));
    assert_eq!(damaged(&|l| l.insert(6, "file late.dat".into())), format!("{bad} line 7: `file late.dat` after the first block line"));
    assert!(!BlockMap::looks_like(&testdata("mainnet-0-589.blk")));
}

#[test]
fn text_and_rpc_sources_are_not_mapped() {
    let temp = tempfile::tempdir().unwrap();
    let text = temp.path().join("blocks.txt");
    std::fs::write(&text, "1 00\n").unwrap();
    let mut out = Vec::new();
    let err = error(blocks::write_map(&Source::detect(&text).unwrap(), HeightRange::default(), Start::Genesis, &mut out, |_| {}));
    assert!(err.ends_with("only block files and HEIGHT.bin files are mapped"), "{err}");
}
