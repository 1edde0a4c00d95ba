//! A file's BLAKE3 from its aligned blocks, hashed in any order and on any core.
//!
//! BLAKE3 is a tree hash: a file longer than one block (a power of two of 1 KiB chunks, as the
//! caller chooses: 64 KiB for pushes and pulls) hashes to the root of a tree whose subtrees
//! starting at multiples of the block length are exactly its blocks. So each block's chaining value can be computed on its own, as soon as
//! its bytes are written, and the root is then merged from those values in the tree's shape
//! (BLAKE3 paper, section 2.1; `blake3::hazmat`). The result is the plain BLAKE3 of the file,
//! the manifest's `digest`, whatever the order. A file of at most one block is hashed whole.
//! Tested against `blake3::hash` for lengths around every boundary.

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

use super::Digest;

/// What hashing one block yields: the file's digest when the file is that one block, else
/// the block's chaining value.
pub type Part = [u8; 32];

/// Number of blocks of a file of `len` bytes (at least one).
pub fn blocks(len: u64, block: u64) -> usize {
    len.div_ceil(block).max(1) as usize
}

/// Byte range of block `i` of a file of `len` bytes.
pub fn block_range(len: u64, block: u64, i: usize) -> std::ops::Range<u64> {
    let start = i as u64 * block;
    start..(start + block).min(len)
}

/// Hashes block `i` (`data`, all of its bytes) of a file of `len` bytes.
pub fn hash_block(len: u64, block: u64, i: usize, data: &[u8]) -> Part {
    debug_assert!(block.is_power_of_two() && block >= blake3::CHUNK_LEN as u64);
    debug_assert_eq!(data.len() as u64, block_range(len, block, i).count() as u64);
    if len <= block {
        return *blake3::hash(data).as_bytes();
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(i as u64 * block);
    h.update(data);
    h.finalize_non_root()
}

/// The file's digest from the [`hash_block`] parts of all its blocks, in order.
pub fn root(len: u64, block: u64, parts: &[Part]) -> Digest {
    assert_eq!(parts.len(), blocks(len, block), "one part per block");
    if len <= block {
        return Digest::from(blake3::Hash::from_bytes(parts[0]));
    }
    let left = hazmat::left_subtree_len(len);
    let l = subtree(0, left, block, parts);
    let r = subtree(left, len - left, block, parts);
    Digest::from(hazmat::merge_subtrees_root(&l, &r, Mode::Hash))
}

/// Chaining value of the subtree covering `len` bytes from `start` (aligned to `block`).
fn subtree(start: u64, len: u64, block: u64, parts: &[Part]) -> ChainingValue {
    if len <= block {
        return parts[(start / block) as usize];
    }
    // Left subtrees are powers of two of chunks, so at least `block` and a multiple of it.
    let left = hazmat::left_subtree_len(len);
    let l = subtree(start, left, block, parts);
    let r = subtree(start + left, len - left, block, parts);
    hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_blocks(data: &[u8], block: u64) -> Digest {
        let len = data.len() as u64;
        // Hash the blocks out of order, as a pull does.
        let n = blocks(len, block);
        let mut parts = vec![[0u8; 32]; n];
        for i in (0..n).rev() {
            let r = block_range(len, block, i);
            parts[i] = hash_block(len, block, i, &data[r.start as usize..r.end as usize]);
        }
        root(len, block, &parts)
    }

    #[test]
    fn equals_plain_blake3_around_every_boundary() {
        let data = crate::chunk::tests::noise(9, 40 * 1024 + 77);
        for block in [1024u64, 2048, 8192] {
            let mut lens = vec![0usize, 1, 1023, 1024, 1025];
            for k in 1..=4usize {
                let b = block as usize * k;
                lens.extend([b - 1, b, b + 1, b + 1024, b + 1500]);
            }
            lens.extend([data.len() - 1, data.len()]);
            for len in lens {
                let d = &data[..len];
                assert_eq!(
                    by_blocks(d, block),
                    Digest::of(d),
                    "block {block}, len {len}"
                );
            }
        }
    }

    #[test]
    fn a_large_block_size_on_a_few_blocks() {
        const BLOCK: u64 = 4 << 20;
        let data = crate::chunk::tests::noise(3, (3 * BLOCK + 12_345) as usize);
        assert_eq!(by_blocks(&data, BLOCK), Digest::of(&data));
        assert_eq!(
            by_blocks(&data[..BLOCK as usize], BLOCK),
            Digest::of(&data[..BLOCK as usize])
        );
    }
}
