//! The exact size of `zlib.compress(data)` (zlib 1.2.x, level 6, as CPython
//! links it) without producing the bytes: zlib's `deflate_slow` parse
//! (3-byte rolling hash of 15 bits, hash chains, lazy matching with
//! `good 8 / lazy 16 / nice 128 / chain 128`, the 4096 "too far" rule) and
//! `_tr_flush_block`'s choice between stored, fixed and dynamic Huffman
//! blocks with zlib's own tree construction (heap with depth tie-breaks,
//! length-limit fix-up, code-length run encoding). faster-whisper's
//! compression-ratio threshold compares `len(text) / len(zlib.compress(text))`
//! with 2.4, so the size must be zlib's, not another deflate's: zlib-rs and
//! miniz pick other matches and differ by a few bytes.
//!
//! Covers inputs that zlib emits as one block (under 16 000 bytes, far more
//! than a Whisper window's text); longer inputs return `None`.

const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;
const W_SIZE: usize = 1 << 15;
const MAX_DIST: usize = W_SIZE - MIN_LOOKAHEAD;
const HASH_BITS: u32 = 15;
const HASH_MASK: usize = (1 << HASH_BITS) - 1;
const HASH_SHIFT: u32 = HASH_BITS.div_ceil(MIN_MATCH as u32);
const GOOD_MATCH: usize = 8;
const MAX_LAZY: usize = 16;
const NICE_MATCH: usize = 128;
const MAX_CHAIN: usize = 128;
const TOO_FAR: usize = 4096;
const NIL: usize = 0;
/// zlib's symbol buffer holds `lit_bufsize − 1` symbols before it flushes
/// a block (`1 << (memLevel + 6)`, memLevel 8).
const MAX_SYMBOLS: usize = (1 << 14) - 1;

const L_CODES: usize = 286;
const D_CODES: usize = 30;
const BL_CODES: usize = 19;
const END_BLOCK: usize = 256;
const HEAP_SIZE: usize = 2 * L_CODES + 1;

const EXTRA_LBITS: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const EXTRA_DBITS: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const EXTRA_BLBITS: [u32; 19] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
const BL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Length code (0..=28) of a match length − 3 (zlib's `_length_code`).
fn length_code(len_minus_3: usize) -> usize {
    let mut length = 0usize;
    for (code, &e) in EXTRA_LBITS.iter().enumerate().take(28) {
        let n = 1usize << e;
        if len_minus_3 < length + n {
            // zlib overwrites the last entry (length 258) with code 28.
            return if len_minus_3 == 255 { 28 } else { code };
        }
        length += n;
    }
    28
}

/// Distance code of `dist − 1` (zlib's `d_code`).
fn dist_code(d: usize) -> usize {
    let mut base = 0usize;
    for (code, &e) in EXTRA_DBITS.iter().enumerate() {
        let n = 1usize << e;
        if d < base + n {
            return code;
        }
        base += n;
    }
    D_CODES - 1
}

fn static_ltree_len(n: usize) -> u32 {
    match n {
        0..=143 => 8,
        144..=255 => 9,
        256..=279 => 7,
        _ => 8,
    }
}

/// One Huffman tree under construction (zlib's `ct_data`: `freq` and
/// `dad`/`len`, the latter two sharing one field as in zlib).
struct Tree {
    freq: Vec<u64>,
    dl: Vec<u32>,
}

impl Tree {
    fn new(n: usize) -> Self {
        Tree {
            freq: vec![0; n],
            dl: vec![0; n],
        }
    }
}

#[derive(Default)]
struct Lens {
    opt_len: u64,
    static_len: u64,
}

struct Heap {
    heap: Vec<usize>,
    len: usize,
    max: usize,
    depth: Vec<u8>,
}

fn smaller(t: &Tree, n: usize, m: usize, depth: &[u8]) -> bool {
    t.freq[n] < t.freq[m] || (t.freq[n] == t.freq[m] && depth[n] <= depth[m])
}

fn pqdownheap(h: &mut Heap, t: &Tree, mut k: usize) {
    let v = h.heap[k];
    let mut j = k << 1;
    while j <= h.len {
        if j < h.len && smaller(t, h.heap[j + 1], h.heap[j], &h.depth) {
            j += 1;
        }
        if smaller(t, v, h.heap[j], &h.depth) {
            break;
        }
        h.heap[k] = h.heap[j];
        k = j;
        j <<= 1;
    }
    h.heap[k] = v;
}

/// zlib's `build_tree` + `gen_bitlen`: sets code lengths in `t.dl[..elems]`
/// and adds to the block lengths; returns `max_code`.
#[allow(clippy::too_many_arguments)]
fn build_tree(
    t: &mut Tree,
    elems: usize,
    stree: Option<&dyn Fn(usize) -> u32>,
    extra: &[u32],
    base: usize,
    max_length: u32,
    lens: &mut Lens,
) -> usize {
    let mut h = Heap {
        heap: vec![0; HEAP_SIZE],
        len: 0,
        max: HEAP_SIZE,
        depth: vec![0; 2 * L_CODES + 1],
    };
    let mut max_code: isize = -1;
    for n in 0..elems {
        if t.freq[n] != 0 {
            h.len += 1;
            h.heap[h.len] = n;
            max_code = n as isize;
            h.depth[n] = 0;
        } else {
            t.dl[n] = 0;
        }
    }
    while h.len < 2 {
        let node = if max_code < 2 {
            max_code += 1;
            max_code as usize
        } else {
            0
        };
        h.len += 1;
        h.heap[h.len] = node;
        t.freq[node] = 1;
        h.depth[node] = 0;
        lens.opt_len = lens.opt_len.wrapping_sub(1);
        if let Some(s) = stree {
            lens.static_len = lens.static_len.wrapping_sub(s(node) as u64);
        }
    }
    let max_code = max_code as usize;
    for n in (1..=h.len / 2).rev() {
        pqdownheap(&mut h, t, n);
    }
    let mut node = elems;
    loop {
        // pqremove
        let n = h.heap[1];
        h.heap[1] = h.heap[h.len];
        h.len -= 1;
        pqdownheap(&mut h, t, 1);
        let m = h.heap[1];
        h.max -= 1;
        h.heap[h.max] = n;
        h.max -= 1;
        h.heap[h.max] = m;
        t.freq[node] = t.freq[n] + t.freq[m];
        h.depth[node] = h.depth[n].max(h.depth[m]) + 1;
        t.dl[n] = node as u32;
        t.dl[m] = node as u32;
        h.heap[1] = node;
        node += 1;
        pqdownheap(&mut h, t, 1);
        if h.len < 2 {
            break;
        }
    }
    h.max -= 1;
    h.heap[h.max] = h.heap[1];
    // gen_bitlen
    let mut bl_count = [0u32; 16];
    t.dl[h.heap[h.max]] = 0;
    let mut overflow = 0i32;
    let mut hh = h.max + 1;
    while hh < HEAP_SIZE {
        let n = h.heap[hh];
        let mut bits = t.dl[t.dl[n] as usize] + 1;
        if bits > max_length {
            bits = max_length;
            overflow += 1;
        }
        t.dl[n] = bits;
        hh += 1;
        if n > max_code {
            continue;
        }
        bl_count[bits as usize] += 1;
        let xbits = if n >= base { extra[n - base] } else { 0 };
        let f = t.freq[n];
        lens.opt_len = lens.opt_len.wrapping_add(f * (bits + xbits) as u64);
        if let Some(s) = stree {
            lens.static_len = lens.static_len.wrapping_add(f * (s(n) + xbits) as u64);
        }
    }
    if overflow == 0 {
        return max_code;
    }
    loop {
        let mut bits = max_length as usize - 1;
        while bl_count[bits] == 0 {
            bits -= 1;
        }
        bl_count[bits] -= 1;
        bl_count[bits + 1] += 2;
        bl_count[max_length as usize] -= 1;
        overflow -= 2;
        if overflow <= 0 {
            break;
        }
    }
    let mut hh = HEAP_SIZE;
    for bits in (1..=max_length).rev() {
        let mut n = bl_count[bits as usize];
        while n != 0 {
            hh -= 1;
            let m = h.heap[hh];
            if m > max_code {
                continue;
            }
            if t.dl[m] != bits {
                lens.opt_len = lens
                    .opt_len
                    .wrapping_add((bits as i64 - t.dl[m] as i64) as u64 * t.freq[m]);
                t.dl[m] = bits;
            }
            n -= 1;
        }
    }
    max_code
}

/// zlib's `scan_tree`: code-length run symbols of `t` into `bl`.
fn scan_tree(t: &mut Tree, max_code: usize, bl: &mut Tree) {
    let mut prevlen: i64 = -1;
    let mut nextlen = t.dl[0] as i64;
    let mut count = 0;
    let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
    // Guard (zlib writes 0xffff past max_code).
    let guard = if max_code + 1 < t.dl.len() {
        let g = t.dl[max_code + 1];
        t.dl[max_code + 1] = 0xffff;
        Some(g)
    } else {
        None
    };
    for n in 0..=max_code {
        let curlen = nextlen;
        nextlen = if n + 1 < t.dl.len() {
            t.dl[n + 1] as i64
        } else {
            0xffff
        };
        count += 1;
        if count < max_count && curlen == nextlen {
            continue;
        } else if count < min_count {
            bl.freq[curlen as usize] += count as u64;
        } else if curlen != 0 {
            if curlen != prevlen {
                bl.freq[curlen as usize] += 1;
            }
            bl.freq[16] += 1;
        } else if count <= 10 {
            bl.freq[17] += 1;
        } else {
            bl.freq[18] += 1;
        }
        count = 0;
        prevlen = curlen;
        if nextlen == 0 {
            (max_count, min_count) = (138, 3);
        } else if curlen == nextlen {
            (max_count, min_count) = (6, 3);
        } else {
            (max_count, min_count) = (7, 4);
        }
    }
    if let Some(g) = guard {
        t.dl[max_code + 1] = g;
    }
}

/// `len(zlib.compress(data))` for zlib 1.2.x at level 6, or `None` for
/// inputs long enough that zlib would split them into several blocks.
pub fn compressed_len(data: &[u8]) -> Option<usize> {
    let n = data.len();
    if n > 16_000 {
        return None;
    }
    // Window: the input followed by zeros (zlib initialises the bytes past
    // the data it has read).
    let mut win = data.to_vec();
    win.resize(n + MAX_MATCH + MIN_MATCH + 8, 0);
    let mut head = vec![NIL; HASH_MASK + 1];
    let mut prev = vec![NIL; W_SIZE];
    let mut ltree = Tree::new(2 * L_CODES + 1);
    let mut dtree = Tree::new(2 * D_CODES + 1);
    let mut symbols = 0usize;
    let mut ins_h = 0usize;
    if n >= MIN_MATCH {
        ins_h = ((win[0] as usize) << HASH_SHIFT ^ win[1] as usize) & HASH_MASK;
    }
    let insert = |ins_h: &mut usize, head: &mut Vec<usize>, prev: &mut Vec<usize>, s: usize| {
        *ins_h = ((*ins_h << HASH_SHIFT) ^ win[s + MIN_MATCH - 1] as usize) & HASH_MASK;
        let h = head[*ins_h];
        prev[s & (W_SIZE - 1)] = h;
        head[*ins_h] = s;
        h
    };
    let longest_match = |prev: &Vec<usize>,
                         strstart: usize,
                         lookahead: usize,
                         prev_length: usize,
                         mut cur: usize|
     -> (usize, usize) {
        let mut chain = MAX_CHAIN;
        let mut best_len = prev_length;
        let mut match_start = 0;
        let nice = NICE_MATCH.min(lookahead);
        let limit = strstart.saturating_sub(MAX_DIST);
        if prev_length >= GOOD_MATCH {
            chain >>= 2;
        }
        loop {
            let ok = win[cur + best_len] == win[strstart + best_len]
                && win[cur + best_len - 1] == win[strstart + best_len - 1]
                && win[cur] == win[strstart]
                && win[cur + 1] == win[strstart + 1];
            if ok {
                let mut len = 2;
                while len < MAX_MATCH && win[cur + len] == win[strstart + len] {
                    len += 1;
                }
                if len > best_len {
                    match_start = cur;
                    best_len = len;
                    if len >= nice {
                        break;
                    }
                }
            }
            cur = prev[cur & (W_SIZE - 1)];
            chain -= 1;
            if cur <= limit || chain == 0 {
                break;
            }
        }
        (best_len.min(lookahead), match_start)
    };
    let mut tally_lit = |c: u8, symbols: &mut usize| {
        ltree.freq[c as usize] += 1;
        *symbols += 1;
    };
    let mut dist_tally: Vec<(usize, usize)> = Vec::new();
    let (mut strstart, mut lookahead) = (0usize, n);
    let (mut match_length, mut match_start) = (MIN_MATCH - 1, 0usize);
    let (mut prev_length, mut prev_match);
    let mut match_available = false;
    while lookahead > 0 {
        let mut hash_head = NIL;
        if lookahead >= MIN_MATCH {
            hash_head = insert(&mut ins_h, &mut head, &mut prev, strstart);
        }
        prev_length = match_length;
        prev_match = match_start;
        match_length = MIN_MATCH - 1;
        if hash_head != NIL && prev_length < MAX_LAZY && strstart - hash_head <= MAX_DIST {
            let (l, s) = longest_match(&prev, strstart, lookahead, prev_length, hash_head);
            if l > prev_length {
                match_start = s;
            }
            match_length = l;
            if match_length <= 5 && match_length == MIN_MATCH && strstart - match_start > TOO_FAR {
                match_length = MIN_MATCH - 1;
            }
        }
        if prev_length >= MIN_MATCH && match_length <= prev_length {
            let max_insert = strstart + lookahead - MIN_MATCH;
            dist_tally.push((strstart - 1 - prev_match, prev_length - MIN_MATCH));
            symbols += 1;
            lookahead -= prev_length - 1;
            let mut left = prev_length - 2;
            loop {
                strstart += 1;
                if strstart <= max_insert {
                    insert(&mut ins_h, &mut head, &mut prev, strstart);
                }
                left -= 1;
                if left == 0 {
                    break;
                }
            }
            match_available = false;
            match_length = MIN_MATCH - 1;
            strstart += 1;
        } else if match_available {
            tally_lit(win[strstart - 1], &mut symbols);
            strstart += 1;
            lookahead -= 1;
        } else {
            match_available = true;
            strstart += 1;
            lookahead -= 1;
        }
        if symbols >= MAX_SYMBOLS {
            return None;
        }
    }
    if match_available {
        tally_lit(win[strstart - 1], &mut symbols);
    }
    for &(dist, len) in &dist_tally {
        ltree.freq[length_code(len) + 257] += 1;
        dtree.freq[dist_code(dist - 1)] += 1;
    }
    ltree.freq[END_BLOCK] = 1;
    // _tr_flush_block
    let mut lens = Lens::default();
    let sl = |n: usize| static_ltree_len(n);
    let sd = |_: usize| 5u32;
    let lmax = build_tree(
        &mut ltree,
        L_CODES,
        Some(&sl),
        &EXTRA_LBITS,
        257,
        15,
        &mut lens,
    );
    let dmax = build_tree(
        &mut dtree,
        D_CODES,
        Some(&sd),
        &EXTRA_DBITS,
        0,
        15,
        &mut lens,
    );
    let mut bl = Tree::new(2 * BL_CODES + 1);
    scan_tree(&mut ltree, lmax, &mut bl);
    scan_tree(&mut dtree, dmax, &mut bl);
    build_tree(&mut bl, BL_CODES, None, &EXTRA_BLBITS, 0, 7, &mut lens);
    let mut max_blindex = BL_CODES - 1;
    while max_blindex >= 3 && bl.dl[BL_ORDER[max_blindex]] == 0 {
        max_blindex -= 1;
    }
    lens.opt_len = lens
        .opt_len
        .wrapping_add(3 * (max_blindex as u64 + 1) + 5 + 5 + 4);
    let mut opt_lenb = (lens.opt_len + 3 + 7) >> 3;
    let static_lenb = (lens.static_len + 3 + 7) >> 3;
    if static_lenb <= opt_lenb {
        opt_lenb = static_lenb;
    }
    let block = if n as u64 + 4 <= opt_lenb {
        1 + 4 + n as u64
    } else if static_lenb == opt_lenb {
        (3 + lens.static_len).div_ceil(8)
    } else {
        (3 + lens.opt_len).div_ceil(8)
    };
    Some(2 + block as usize + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_equal_cpython_zlib() {
        // len(zlib.compress(s.encode())) with CPython 3.11 / zlib 1.2.13.
        let a300 = "a".repeat(300);
        let cases: &[(&str, usize)] = &[
            ("", 8),
            ("a", 9),
            ("abc", 11),
            ("He might even have been made amiable himself.", 51),
            (
                "the the the the the the the the the the the the the the the the",
                15,
            ),
            (
                "Thank you. Thank you. Thank you. Thank you. Thank you. Thank you. Thank you.",
                22,
            ),
            (&a300, 13),
        ];
        for (s, want) in cases {
            assert_eq!(compressed_len(s.as_bytes()), Some(*want), "{s:?}");
        }
    }
}
