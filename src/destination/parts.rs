//! The multipart part-size rule for archives of unknown size: parts start at `--s3-part-size` and
//! double every tenth of S3's 10,000-part limit (capped at S3's 5 GiB part), so a streamed archive
//! can reach S3's 5 TiB object limit while a small one keeps small parts. Memory stays flat: the
//! upload holds up to three parts of at most 32 MiB; larger ones wait on disk (`s3.rs`).

/// S3's limit on the parts of one upload.
pub const MAX_PARTS: u32 = 10_000;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's largest object.
pub const MAX_OBJECT: u64 = 5 << 40;

/// Part sizes by part number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizes {
    base: u64,
    /// Parts per size step.
    every: u32,
    limit: u32,
}

impl PartSizes {
    /// Parts starting at `base` bytes under a limit of `limit` parts. With S3's own limit the step
    /// is shortened if needed so that the limit's parts hold 5 TiB (from a 5 MiB start, steps of
    /// 1,000 parts would stop at 4.9 TiB).
    pub fn new(base: u64, limit: u32) -> PartSizes {
        let limit = limit.max(1);
        let mut sizes = PartSizes {
            base: base.clamp(1, MAX_PART_SIZE),
            every: (limit / 10).max(1),
            limit,
        };
        while limit >= MAX_PARTS && sizes.every > 1 && sizes.capacity() < MAX_OBJECT {
            sizes.every -= 1;
        }
        sizes
    }

    /// The size of part `n` (1-based).
    pub fn size(&self, n: u32) -> u64 {
        // base <= 2^33 and the shift <= 30: no overflow, and 2^30 doublings pass any cap.
        let step = ((n.max(1) - 1) / self.every).min(30);
        (self.base << step).min(MAX_PART_SIZE)
    }

    /// The most parts allowed.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The bytes `limit` parts hold.
    pub fn capacity(&self) -> u64 {
        (1..=self.limit).map(|n| self.size(n)).sum()
    }

    /// One row per size: (first part, size, bytes uploaded when that size ends), for the README
    /// table and the error message.
    pub fn table(&self) -> Vec<(u32, u64, u64)> {
        let mut rows: Vec<(u32, u64, u64)> = Vec::new();
        let mut total = 0u64;
        for n in 1..=self.limit {
            let size = self.size(n);
            total += size;
            match rows.last_mut() {
                Some(last) if last.1 == size => last.2 = total,
                _ => rows.push((n, size, total)),
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_default_start_doubles_every_thousand_parts_and_reaches_five_tib() {
        let p = PartSizes::new(16 * MIB, MAX_PARTS);
        assert_eq!(p.size(1), 16 * MIB);
        assert_eq!(p.size(1000), 16 * MIB);
        assert_eq!(p.size(1001), 32 * MIB);
        assert_eq!(p.size(8001), 4096 * MIB);
        assert_eq!(p.size(9001), MAX_PART_SIZE);
        assert!(p.capacity() >= MAX_OBJECT, "{}", p.capacity());
        // The first step holds 15.6 GiB at 16 MiB parts: every smaller archive keeps them.
        assert_eq!(p.table()[0], (1, 16 * MIB, 16_000 * MIB));
    }

    #[test]
    fn the_smallest_start_still_reaches_five_tib_within_the_limit() {
        let p = PartSizes::new(5 * MIB, MAX_PARTS);
        assert!(p.capacity() >= MAX_OBJECT, "{}", p.capacity());
        assert!(p.table().iter().all(|r| r.1 <= MAX_PART_SIZE));
    }

    /// `benches/scale.sh parts` prints this table (the README quotes it).
    #[test]
    #[ignore]
    fn print_the_table() {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        for base in [16 * MIB, 5 * MIB] {
            let p = PartSizes::new(base, MAX_PARTS);
            println!(
                "| from {} MiB: parts | part size | archive up to | upload memory |",
                base / MIB
            );
            println!("|---|---|---|---|");
            for (start, size, total) in p.table() {
                let last = p
                    .table()
                    .iter()
                    .find(|r| r.0 > start)
                    .map_or(MAX_PARTS, |r| r.0 - 1);
                println!(
                    "| {start}-{last} | {} MiB | {:.1} GiB | {} MiB |",
                    size / MIB,
                    gib(total),
                    if size > 64 * MIB { 2 } else { 3 } * size / MIB
                );
            }
        }
    }

    #[test]
    fn a_lowered_limit_grows_within_it() {
        let p = PartSizes::new(5 * MIB, 4);
        assert_eq!(
            (1..=4).map(|n| p.size(n) / MIB).collect::<Vec<_>>(),
            [5, 10, 20, 40]
        );
        assert_eq!(p.capacity(), 75 * MIB);
    }
}
