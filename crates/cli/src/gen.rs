//! `jiuzhu gen`: synthetic but realistic data for demos and benchmarks.
//!
//! Writes `policy.toml` (the example policy), `spells.csv` and `invoices.csv`
//! exactly as `formats.md` describes them. The output depends only on the
//! arguments: every person's spells come from a generator seeded by the seed
//! and the person's index, every block of invoices from one seeded by the seed
//! and the block's index, and the generators are defined here, so neither the
//! number of threads nor a crate update changes a byte.
//!
//! Money is integer fen throughout; bills are split with integer basis points.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use jiuzhu_core::{Date, ResidentId};
use rayon::prelude::*;

const EXAMPLE_POLICY: &str = include_str!("../../../fixtures/example-policy.toml");

const SPELLS_HEADER: &[u8] = b"person_id,category,valid_from,valid_to,source\n";
const INVOICES_HEADER: &[u8] = b"invoice_no,person_id,hospital,visit_type,service_date,settled_at,\
total,fund_paid,in_scope_self_pay,out_of_scope_self_pay\n";

/// Invoices per block: each block has its own generator, so this constant
/// (not the thread count) fixes the output. Changing it changes the data.
const INVOICES_PER_BLOCK: u64 = 1 << 15;
/// People per block of spells (only a unit of work: spells are seeded per person).
const PEOPLE_PER_BLOCK: u64 = 1 << 14;
/// Blocks generated in parallel before they are handed to the writer.
const BLOCKS_PER_BATCH: u64 = 16;
const WRITE_BUFFER_BYTES: usize = 8 << 20;

/// Out of 1000 invoices, about this many repeat an earlier bill (the same
/// bill reported by a second channel).
const DUPLICATES_PER_MILLE: u64 = 5;
/// How many recent bills of a block a duplicate may repeat.
const RECENT_BILLS: usize = 64;
/// The share of people (the first of the index order, whose IDs are spread
/// over every region and age) who see a doctor often, and the share of
/// invoices that are theirs.
const FREQUENT_VISITORS_PER_MILLE: u64 = 100;
const FREQUENT_VISITS_PER_MILLE: u64 = 350;

/// Invoice numbers carry a scrambled 10-digit serial, unique per bill.
const SERIAL_SPACE: u64 = 10_000_000_000;
/// Coprime with 10, so that `serial × this mod 10^10` is a bijection.
const SERIAL_MULTIPLIER: u64 = 6_364_136_223;
/// A prime, coprime with the size of the resident-ID space.
const PERSON_MULTIPLIER: u64 = 2_654_435_761;

const STREAM_PEOPLE: u64 = 1;
const STREAM_SPELLS: u64 = 2;
const STREAM_INVOICES: u64 = 3;
const STREAM_SERIALS: u64 = 4;

/// `jiuzhu gen`: writes a policy, spells and invoices for a synthetic
/// population into a directory.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Number of people.
    #[arg(long)]
    pub people: u64,
    /// Number of invoice rows, duplicates included.
    #[arg(long)]
    pub invoices: u64,
    /// The same seed gives the same files, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory to write policy.toml, spells.csv and invoices.csv into (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
}

/// Writes the files and returns the line that sums them up.
pub fn run(args: &GenArgs) -> Result<String> {
    let started = Instant::now();
    if args.invoices > 0 && args.people == 0 {
        bail!(
            "--invoices {} needs at least one person (--people)",
            args.invoices
        );
    }
    if args.invoices > SERIAL_SPACE {
        bail!("--invoices may be at most {SERIAL_SPACE}");
    }
    let calendar = Calendar::new()?;
    let people = People::new(args.seed, args.people, &calendar)?;
    fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;

    let policy_path = args.dir.join("policy.toml");
    fs::write(&policy_path, EXAMPLE_POLICY)
        .with_context(|| format!("cannot write {}", policy_path.display()))?;

    let ids = people.all_ids()?;
    let spells = write_spells(&args.dir.join("spells.csv"), args.seed, &ids, &calendar)?;
    let invoices = InvoiceGenerator::new(args.seed, &ids, &calendar);
    let duplicates = invoices.write(&args.dir.join("invoices.csv"), args.invoices)?;

    let elapsed = started.elapsed();
    let summary = format!(
        "gen: {} people ({} spells, {} people without any), {} invoices ({} duplicates) in {} in {}.{:03} s",
        args.people,
        spells.spells,
        spells.people_without_spells,
        args.invoices,
        duplicates,
        args.dir.display(),
        elapsed.as_secs(),
        elapsed.subsec_millis()
    );
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Random numbers: SplitMix64 to seed, xoshiro256** to draw.

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256** (Blackman and Vigna).
struct Rng([u64; 4]);

impl Rng {
    /// A generator for one stream (people, spells, invoices…) and one index
    /// within it (a person, a block), derived from the seed.
    fn derive(seed: u64, stream: u64, index: u64) -> Rng {
        let stream_key = SplitMix64(seed).next() ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let index_key = SplitMix64(stream_key).next() ^ index;
        let mut mix = SplitMix64(index_key);
        Rng([mix.next(), mix.next(), mix.next(), mix.next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (n > 0), by a 128-bit multiply.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = high.abs_diff(low) + 1;
        low + self.below(span) as i64
    }

    fn per_mille(&mut self, chance: u64) -> bool {
        self.below(1000) < chance
    }

    /// Picks an item by integer weights.
    fn weighted<T: Copy>(&mut self, choices: &[(T, u64)]) -> T {
        let total: u64 = choices.iter().map(|&(_, weight)| weight).sum();
        let mut roll = self.below(total.max(1));
        for &(choice, weight) in choices {
            if roll < weight {
                return choice;
            }
            roll -= weight;
        }
        choices[choices.len() - 1].0
    }
}

// ---------------------------------------------------------------------------
// Dates, as days since 1970-01-01, formatted from a table.

struct Calendar {
    first_day: i32,
    iso: Vec<[u8; 10]>,
    birth_first_day: i32,
    birth_days: u64,
    /// 2023-01-01, 2024-01-01, 2025-01-01, 2026-01-01.
    new_years: [i32; 4],
}

impl Calendar {
    fn new() -> Result<Calendar> {
        let day = |year, month, day| {
            Date::from_ymd(year, month, day)
                .map(Date::days_since_epoch)
                .ok_or_else(|| anyhow!("{year}-{month}-{day} is not a date"))
        };
        let first_day = day(2020, 1, 1)?;
        let last_day = day(2029, 12, 31)?;
        let iso = (first_day..=last_day)
            .map(|days| {
                let mut text = [0u8; 10];
                if let Some(date) = Date::from_days_since_epoch(days) {
                    date.write_iso(&mut text);
                }
                text
            })
            .collect();
        let birth_first_day = day(1930, 1, 1)?;
        let birth_last_day = day(2010, 12, 31)?;
        Ok(Calendar {
            first_day,
            iso,
            birth_first_day,
            birth_days: u64::from((birth_last_day - birth_first_day + 1).unsigned_abs()),
            new_years: [
                day(2023, 1, 1)?,
                day(2024, 1, 1)?,
                day(2025, 1, 1)?,
                day(2026, 1, 1)?,
            ],
        })
    }

    /// Appends `YYYY-MM-DD`.
    fn push_date(&self, out: &mut Vec<u8>, days: i32) {
        let index = usize::try_from(days - self.first_day).ok();
        match index.and_then(|index| self.iso.get(index)) {
            Some(text) => out.extend_from_slice(text),
            None => {
                let mut text = *b"0000-01-01";
                if let Some(date) = Date::from_days_since_epoch(days) {
                    date.write_iso(&mut text);
                }
                out.extend_from_slice(&text);
            }
        }
    }

    /// A start date for a spell: mostly 2023, fewer in 2024, few in 2025.
    fn spell_start(&self, rng: &mut Rng) -> i32 {
        let year = rng.weighted(&[(0usize, 80), (1, 15), (2, 5)]);
        let first = self.new_years[year];
        rng.between(i64::from(first), i64::from(self.new_years[year + 1] - 1)) as i32
    }
}

// ---------------------------------------------------------------------------
// People: index -> resident ID, a bijection onto region × birth date × sequence.

/// Districts (real GB/T 2260 codes) that people are registered in.
const REGIONS: [u32; 40] = [
    110101, 110102, 110105, 110108, 120101, 130102, 140105, 210102, 220102, 230102, 310101, 310104, 310115,
    320102, 320106, 330102, 330105, 330106, 330108, 340104, 350102, 350203, 360102, 370102, 370202, 410102,
    420102, 420106, 430102, 430104, 440103, 440104, 440106, 440304, 450103, 500103, 510104, 510107, 530102,
    610113,
];

struct People<'a> {
    count: u64,
    space: u64,
    offset: u64,
    calendar: &'a Calendar,
}

impl<'a> People<'a> {
    fn new(seed: u64, count: u64, calendar: &'a Calendar) -> Result<People<'a>> {
        let space = REGIONS.len() as u64 * calendar.birth_days * 1000;
        if count > space {
            bail!("--people may be at most {space}");
        }
        if gcd(PERSON_MULTIPLIER, space) != 1 {
            bail!("internal: the person multiplier is not coprime with {space}");
        }
        let offset = Rng::derive(seed, STREAM_PEOPLE, 0).below(space);
        Ok(People {
            count,
            space,
            offset,
            calendar,
        })
    }

    /// The resident ID of person `index`: distinct indices give distinct IDs.
    fn id(&self, index: u64) -> Option<[u8; 18]> {
        let scrambled = (u128::from(index) * u128::from(PERSON_MULTIPLIER) + u128::from(self.offset))
            % u128::from(self.space);
        let scrambled = scrambled as u64;
        let sequence = scrambled % 1000;
        let rest = scrambled / 1000;
        let birth_offset = i32::try_from(rest % self.calendar.birth_days).ok()?;
        let region = REGIONS.get(usize::try_from(rest / self.calendar.birth_days).ok()?)?;
        let birth = Date::from_days_since_epoch(self.calendar.birth_first_day + birth_offset)?;
        let birth_digits = u64::try_from(birth.year()).ok()? * 10_000
            + u64::from(birth.month()) * 100
            + u64::from(birth.day());
        let digits = u64::from(*region) * 100_000_000_000 + birth_digits * 1000 + sequence;
        ResidentId::from_leading_digits(digits).map(ResidentId::to_bytes)
    }

    fn all_ids(&self) -> Result<Vec<[u8; 18]>> {
        (0..self.count)
            .into_par_iter()
            .map(|index| self.id(index))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| anyhow!("internal: a person index did not map to a resident ID"))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

// ---------------------------------------------------------------------------
// Spells.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Category {
    Tk,
    Db,
    Zc,
    Dsr,
    Zcx,
}

impl Category {
    fn code(self) -> &'static [u8] {
        match self {
            Category::Tk => b"TK",
            Category::Db => b"DB",
            Category::Zc => b"ZC",
            Category::Dsr => b"DSR",
            Category::Zcx => b"ZCX",
        }
    }

    /// The department that reports the category; a few reports carry none.
    fn source(self, rng: &mut Rng) -> &'static [u8] {
        if rng.per_mille(20) {
            return b"";
        }
        match self {
            Category::Zc => "残联".as_bytes(),
            Category::Dsr if rng.per_mille(300) => "乡村振兴".as_bytes(),
            Category::Zcx if rng.per_mille(200) => "乡村振兴".as_bytes(),
            _ => "民政".as_bytes(),
        }
    }
}

struct SpellStats {
    spells: u64,
    people_without_spells: u64,
}

fn write_spells(path: &Path, seed: u64, ids: &[[u8; 18]], calendar: &Calendar) -> Result<SpellStats> {
    let blocks = (ids.len() as u64).div_ceil(PEOPLE_PER_BLOCK);
    let make_block = |block: u64| {
        let start = block * PEOPLE_PER_BLOCK;
        let end = (start + PEOPLE_PER_BLOCK).min(ids.len() as u64);
        let mut out = Vec::with_capacity((end - start) as usize * 80);
        let mut stats = SpellStats {
            spells: 0,
            people_without_spells: 0,
        };
        for index in start..end {
            let written = person_spells(&mut out, seed, index, &ids[index as usize], calendar);
            stats.spells += written;
            stats.people_without_spells += u64::from(written == 0);
        }
        (out, stats)
    };
    let mut stats = SpellStats {
        spells: 0,
        people_without_spells: 0,
    };
    write_blocks(path, SPELLS_HEADER, blocks, make_block, |block: &SpellStats| {
        stats.spells += block.spells;
        stats.people_without_spells += block.people_without_spells;
    })?;
    Ok(stats)
}

/// Writes one person's spells and returns how many.
fn person_spells(out: &mut Vec<u8>, seed: u64, index: u64, id: &[u8; 18], calendar: &Calendar) -> u64 {
    use Category::*;
    let mut rng = Rng::derive(seed, STREAM_SPELLS, index);
    let mut spell = |rng: &mut Rng, category: Category, from: i32, to: Option<i32>| {
        out.extend_from_slice(id);
        out.push(b',');
        out.extend_from_slice(category.code());
        out.push(b',');
        calendar.push_date(out, from);
        out.push(b',');
        if let Some(to) = to {
            calendar.push_date(out, to);
        }
        out.push(b',');
        out.extend_from_slice(category.source(rng));
        out.push(b'\n');
    };
    // Ended spells last one month to about two years.
    let maybe_end = |rng: &mut Rng, from: i32, per_mille: u64| {
        rng.per_mille(per_mille)
            .then(|| from + rng.between(30, 720) as i32)
    };
    let roll = rng.below(1000);
    if roll < 30 {
        // Known to the insurance, but to no department.
        0
    } else if roll < 150 {
        // Two categories at once, from two departments: rank decides.
        let main = rng.weighted(&[(Db, 55), (Dsr, 30), (Zcx, 15)]);
        let other = rng.weighted(&[(Zc, 70), (Tk, 30)]);
        let main_from = calendar.spell_start(&mut rng);
        let main_to = maybe_end(&mut rng, main_from, 120);
        let other_from = (main_from + rng.between(0, 400) as i32).min(calendar.new_years[3] - 1);
        let other_to = maybe_end(&mut rng, other_from, 250);
        spell(&mut rng, main, main_from, main_to);
        spell(&mut rng, other, other_from, other_to);
        2
    } else if roll < 300 {
        // A change of category: one spell ends the day before the next starts.
        let (before, after) = rng.weighted(&[
            ((Dsr, Db), 35),
            ((Db, Dsr), 25),
            ((Zcx, Db), 15),
            ((Zcx, Dsr), 15),
            ((Db, Tk), 10),
        ]);
        let change = rng.between(
            i64::from(calendar.new_years[1] + 31),
            i64::from(calendar.new_years[3] - 31),
        ) as i32;
        let before_from = rng.between(i64::from(calendar.new_years[0]), i64::from(change - 30)) as i32;
        let after_to = maybe_end(&mut rng, change, 150);
        spell(&mut rng, before, before_from, Some(change - 1));
        spell(&mut rng, after, change, after_to);
        2
    } else {
        let category = rng.weighted(&[(Tk, 4), (Db, 46), (Zc, 8), (Dsr, 32), (Zcx, 10)]);
        let from = calendar.spell_start(&mut rng);
        let to = maybe_end(&mut rng, from, 150);
        spell(&mut rng, category, from, to);
        1
    }
}

// ---------------------------------------------------------------------------
// Invoices.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    Outpatient,
    Emergency,
    Chronic,
    Inpatient,
}

impl Visit {
    fn name(self) -> &'static [u8] {
        match self {
            Visit::Outpatient => b"outpatient",
            Visit::Emergency => b"emergency",
            Visit::Chronic => b"chronic",
            Visit::Inpatient => b"inpatient",
        }
    }

    fn number_prefix(self) -> &'static [u8] {
        match self {
            Visit::Outpatient => b"MZ",
            Visit::Emergency => b"JZ",
            Visit::Chronic => b"MB",
            Visit::Inpatient => b"ZY",
        }
    }
}

/// Hospitals reported by name rather than by code.
const HOSPITAL_NAMES: [&str; 16] = [
    "北京协和医院",
    "首都医科大学附属北京天坛医院",
    "上海交通大学医学院附属瑞金医院",
    "复旦大学附属中山医院",
    "浙江大学医学院附属第一医院",
    "杭州市第一人民医院",
    "南京鼓楼医院",
    "中山大学附属第一医院",
    "四川大学华西医院",
    "华中科技大学同济医学院附属协和医院",
    "中南大学湘雅医院",
    "山东大学齐鲁医院",
    "重庆医科大学附属第一医院",
    "淳安县第一人民医院",
    "桐庐县中医院",
    "西湖区北山街道社区卫生服务中心",
];

#[derive(Clone, Copy)]
enum HospitalRef {
    /// `H` + a region code + a four-digit number.
    Code {
        region: [u8; 6],
        number: u16,
    },
    Name(usize),
}

#[derive(Clone, Copy)]
enum NumberStyle {
    /// `MZ2024` + serial.
    VisitYear,
    /// `e-2024-` + serial.
    Electronic,
    /// `Fp` + serial + `_` + a channel letter.
    Channel(u8),
}

#[derive(Clone, Copy)]
struct Bill {
    style: NumberStyle,
    serial: u64,
    person: usize,
    hospital: HospitalRef,
    visit: Visit,
    service_day: i32,
    /// Seconds since 1970-01-01T00:00:00 of the local (+08:00) wall clock.
    settled_local: i64,
    /// Written in UTC with milliseconds (`…T02:00:00.123Z`) rather than `+08:00`.
    utc_millis: Option<u16>,
    total_fen: i64,
    fund_paid_fen: i64,
    in_scope_fen: i64,
    out_of_scope_fen: i64,
}

struct InvoiceGenerator<'a> {
    seed: u64,
    ids: &'a [[u8; 18]],
    calendar: &'a Calendar,
    serial_offset: u64,
    service_first_day: i32,
    service_last_day: i32,
}

impl<'a> InvoiceGenerator<'a> {
    fn new(seed: u64, ids: &'a [[u8; 18]], calendar: &'a Calendar) -> InvoiceGenerator<'a> {
        InvoiceGenerator {
            seed,
            ids,
            calendar,
            serial_offset: Rng::derive(seed, STREAM_SERIALS, 0).below(SERIAL_SPACE),
            service_first_day: calendar.new_years[1],
            service_last_day: calendar.new_years[3] - 1,
        }
    }

    /// Writes `count` invoice rows and returns how many are duplicates.
    fn write(&self, path: &Path, count: u64) -> Result<u64> {
        let blocks = count.div_ceil(INVOICES_PER_BLOCK);
        let mut duplicates = 0;
        write_blocks(
            path,
            INVOICES_HEADER,
            blocks,
            |block| self.block(block, count),
            |block_duplicates: &u64| duplicates += block_duplicates,
        )?;
        Ok(duplicates)
    }

    /// One block of rows and its number of duplicates.
    fn block(&self, block: u64, count: u64) -> (Vec<u8>, u64) {
        let start = block * INVOICES_PER_BLOCK;
        let end = (start + INVOICES_PER_BLOCK).min(count);
        let mut rng = Rng::derive(self.seed, STREAM_INVOICES, block);
        let mut out = Vec::with_capacity((end - start) as usize * 150);
        let mut recent: Vec<(Bill, bool)> = Vec::with_capacity(RECENT_BILLS);
        let mut duplicates = 0;
        for row in start..end {
            if !recent.is_empty() && rng.per_mille(DUPLICATES_PER_MILLE) {
                let pick = rng.below(recent.len() as u64) as usize;
                if let Some((bill, repeated)) = recent.get_mut(pick) {
                    if !*repeated {
                        *repeated = true;
                        let mut copy = *bill;
                        // The second channel reports it a minute to two days later.
                        copy.settled_local += rng.between(60, 2 * 86_400);
                        self.push_bill(&mut out, &copy);
                        duplicates += 1;
                        continue;
                    }
                }
            }
            let bill = self.bill(&mut rng, row);
            self.push_bill(&mut out, &bill);
            if recent.len() < RECENT_BILLS {
                recent.push((bill, false));
            } else {
                recent[(row % RECENT_BILLS as u64) as usize] = (bill, false);
            }
        }
        (out, duplicates)
    }

    fn bill(&self, rng: &mut Rng, row: u64) -> Bill {
        let people = self.ids.len() as u64;
        let frequent = (people * FREQUENT_VISITORS_PER_MILLE / 1000).max(1);
        let is_frequent = rng.per_mille(FREQUENT_VISITS_PER_MILLE);
        let person = if is_frequent {
            rng.below(frequent)
        } else {
            rng.below(people)
        } as usize;
        let visit = if is_frequent {
            rng.weighted(&[
                (Visit::Outpatient, 450),
                (Visit::Emergency, 60),
                (Visit::Chronic, 300),
                (Visit::Inpatient, 190),
            ])
        } else {
            rng.weighted(&[
                (Visit::Outpatient, 640),
                (Visit::Emergency, 80),
                (Visit::Chronic, 150),
                (Visit::Inpatient, 130),
            ])
        };
        let hospital = if rng.per_mille(600) {
            let region = if rng.per_mille(700) {
                let id = &self.ids[person];
                [id[0], id[1], id[2], id[3], id[4], id[5]]
            } else {
                let mut region = [b'0'; 6];
                push_padded(
                    &mut region,
                    REGIONS[rng.below(REGIONS.len() as u64) as usize].into(),
                );
                region
            };
            HospitalRef::Code {
                region,
                number: rng.between(1, 40) as u16,
            }
        } else {
            HospitalRef::Name(rng.below(HOSPITAL_NAMES.len() as u64) as usize)
        };
        let channel = b'a' + rng.below(3) as u8;
        let style = rng.weighted(&[
            (NumberStyle::VisitYear, 45),
            (NumberStyle::Electronic, 30),
            (NumberStyle::Channel(channel), 25),
        ]);
        let serial = ((u128::from(row) * u128::from(SERIAL_MULTIPLIER) + u128::from(self.serial_offset))
            % u128::from(SERIAL_SPACE)) as u64;
        let service_day = rng.between(
            i64::from(self.service_first_day),
            i64::from(self.service_last_day),
        ) as i32;

        // Seconds after local midnight of the service date until settlement.
        const HOUR: i64 = 3600;
        const DAY: i64 = 86_400;
        let settled_after = match visit {
            Visit::Outpatient => 8 * HOUR + rng.between(0, 11 * HOUR),
            Visit::Emergency => rng.between(0, 24 * HOUR - 1) + rng.between(10 * 60, 3 * HOUR),
            Visit::Chronic => {
                let later = if rng.per_mille(200) {
                    rng.between(1, 3) * DAY
                } else {
                    0
                };
                8 * HOUR + rng.between(0, 10 * HOUR) + later
            }
            Visit::Inpatient => 9 * HOUR + rng.between(0, 9 * HOUR) + rng.between(0, 3) * DAY,
        };
        let settled_local = i64::from(service_day) * DAY + settled_after;
        let utc_millis = rng.per_mille(100).then(|| rng.below(1000) as u16);

        let (total_fen, fund_paid_fen, in_scope_fen, out_of_scope_fen) = amounts(rng, visit);
        Bill {
            style,
            serial,
            person,
            hospital,
            visit,
            service_day,
            settled_local,
            utc_millis,
            total_fen,
            fund_paid_fen,
            in_scope_fen,
            out_of_scope_fen,
        }
    }

    fn push_bill(&self, out: &mut Vec<u8>, bill: &Bill) {
        let service_year = 2024 + u64::from(bill.service_day >= self.calendar.new_years[2]);
        match bill.style {
            NumberStyle::VisitYear => {
                out.extend_from_slice(bill.visit.number_prefix());
                push_digits(out, service_year, 4);
                push_digits(out, bill.serial, 10);
            }
            NumberStyle::Electronic => {
                out.extend_from_slice(b"e-");
                push_digits(out, service_year, 4);
                out.push(b'-');
                push_digits(out, bill.serial, 10);
            }
            NumberStyle::Channel(letter) => {
                out.extend_from_slice(b"Fp");
                push_digits(out, bill.serial, 10);
                out.push(b'_');
                out.push(letter);
            }
        }
        out.push(b',');
        out.extend_from_slice(&self.ids[bill.person]);
        out.push(b',');
        match bill.hospital {
            HospitalRef::Code { region, number } => {
                out.push(b'H');
                out.extend_from_slice(&region);
                push_digits(out, u64::from(number), 4);
            }
            HospitalRef::Name(index) => out.extend_from_slice(HOSPITAL_NAMES[index].as_bytes()),
        }
        out.push(b',');
        out.extend_from_slice(bill.visit.name());
        out.push(b',');
        self.calendar.push_date(out, bill.service_day);
        out.push(b',');
        self.push_timestamp(out, bill.settled_local, bill.utc_millis);
        for fen in [
            bill.total_fen,
            bill.fund_paid_fen,
            bill.in_scope_fen,
            bill.out_of_scope_fen,
        ] {
            out.push(b',');
            push_yuan(out, fen);
        }
        out.push(b'\n');
    }

    /// RFC 3339: `+08:00`, or UTC with milliseconds and `Z`.
    fn push_timestamp(&self, out: &mut Vec<u8>, local_seconds: i64, utc_millis: Option<u16>) {
        let seconds = match utc_millis {
            Some(_) => local_seconds - 8 * 3600,
            None => local_seconds,
        };
        let day = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400) as u64;
        self.calendar.push_date(out, day as i32);
        out.push(b'T');
        push_digits(out, of_day / 3600, 2);
        out.push(b':');
        push_digits(out, of_day / 60 % 60, 2);
        out.push(b':');
        push_digits(out, of_day % 60, 2);
        match utc_millis {
            Some(millis) => {
                out.push(b'.');
                push_digits(out, u64::from(millis), 3);
                out.push(b'Z');
            }
            None => out.extend_from_slice(b"+08:00"),
        }
    }
}

/// A bill's total and its split, in fen: `fund + in_scope + out_of_scope == total`.
fn amounts(rng: &mut Rng, visit: Visit) -> (i64, i64, i64, i64) {
    const YUAN: i64 = 100;
    // (lowest, highest) yuan of a band, by weight.
    let bands: &[((i64, i64), u64)] = match visit {
        Visit::Outpatient => &[((20, 200), 70), ((200, 600), 25), ((600, 1500), 5)],
        Visit::Emergency => &[((100, 800), 60), ((800, 3000), 30), ((3000, 8000), 10)],
        Visit::Chronic => &[((300, 2000), 50), ((2000, 8000), 35), ((8000, 30_000), 15)],
        Visit::Inpatient => &[
            ((3000, 15_000), 45),
            ((15_000, 50_000), 35),
            ((50_000, 150_000), 15),
            ((150_000, 500_000), 5),
        ],
    };
    let (low, high) = rng.weighted(bands);
    let total = rng.between(low * YUAN, high * YUAN);
    // Shares in basis points: what the funds paid, and what lay outside the catalogue.
    let (fund_low, fund_high, out_of_scope_high, no_out_of_scope_per_mille) = match visit {
        Visit::Outpatient => (2000, 7000, 3000, 400),
        Visit::Emergency => (3000, 7000, 2000, 200),
        Visit::Chronic => (5500, 8500, 1000, 300),
        Visit::Inpatient => (5000, 8500, 2000, 50),
    };
    let fund_bp = rng.between(fund_low, fund_high);
    let out_of_scope_bp = if rng.per_mille(no_out_of_scope_per_mille) {
        0
    } else {
        rng.between(0, out_of_scope_high).min(10_000 - fund_bp)
    };
    let fund = total * fund_bp / 10_000;
    let out_of_scope = total * out_of_scope_bp / 10_000;
    let in_scope = total - fund - out_of_scope;
    (total, fund, in_scope, out_of_scope)
}

// ---------------------------------------------------------------------------
// Formatting by hand.

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while value > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    let start = start.min(digits.len() - width.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

/// Writes `value` right-aligned into `out`, keeping the zeros before it.
fn push_padded(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Appends fen as yuan with two decimals: `1234.50`.
fn push_yuan(out: &mut Vec<u8>, fen: i64) {
    let fen = fen.unsigned_abs();
    push_digits(out, fen / 100, 1);
    out.push(b'.');
    push_digits(out, fen % 100, 2);
}

// ---------------------------------------------------------------------------
// Writing: blocks are made in parallel, a batch at a time, and written in
// order by one thread while the next batch is being made.

fn write_blocks<S: Send>(
    path: &Path,
    header: &[u8],
    blocks: u64,
    make_block: impl Fn(u64) -> (Vec<u8>, S) + Sync,
    mut tally: impl FnMut(&S),
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    out.write_all(header)?;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Vec<Vec<u8>>>(1);
        let writer = scope.spawn(move || -> std::io::Result<()> {
            for batch in receiver {
                for block in batch {
                    out.write_all(&block)?;
                }
            }
            out.flush()
        });
        let mut first = 0;
        while first < blocks {
            let last = (first + BLOCKS_PER_BATCH).min(blocks);
            let made: Vec<(Vec<u8>, S)> = (first..last).into_par_iter().map(&make_block).collect();
            let mut batch = Vec::with_capacity(made.len());
            for (bytes, stats) in made {
                tally(&stats);
                batch.push(bytes);
            }
            if sender.send(batch).is_err() {
                // The writer stopped on an error, which join reports.
                break;
            }
            first = last;
        }
        drop(sender);
        writer
            .join()
            .map_err(|_| anyhow!("the writer thread panicked"))?
            .with_context(|| format!("cannot write {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use jiuzhu_core::{Fen, InvoiceNo, Timestamp};

    use super::*;

    fn generate(dir: &Path, people: u64, invoices: u64, seed: u64) {
        run(&GenArgs {
            people,
            invoices,
            seed,
            dir: dir.to_path_buf(),
        })
        .unwrap();
    }

    fn rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let text = fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap().split(',').map(str::to_owned).collect();
        let rows = lines
            .map(|line| line.split(',').map(str::to_owned).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn the_same_seed_gives_byte_identical_files_whatever_the_number_of_threads() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let invoices = INVOICES_PER_BLOCK * 3 + 123;
        for (dir, threads) in dirs.iter().zip([1, 3, 4]) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| generate(dir.path(), 20_000, invoices, 7));
        }
        let other_seed = tempfile::tempdir().unwrap();
        generate(other_seed.path(), 20_000, invoices, 8);
        for file in ["policy.toml", "spells.csv", "invoices.csv"] {
            let first = fs::read(dirs[0].path().join(file)).unwrap();
            for dir in &dirs[1..] {
                assert!(
                    first == fs::read(dir.path().join(file)).unwrap(),
                    "{file} differs"
                );
            }
        }
        for file in ["spells.csv", "invoices.csv"] {
            assert!(
                fs::read(dirs[0].path().join(file)).unwrap()
                    != fs::read(other_seed.path().join(file)).unwrap(),
                "another seed gives the same {file}"
            );
        }
        assert_eq!(
            fs::read_to_string(dirs[0].path().join("policy.toml")).unwrap(),
            EXAMPLE_POLICY
        );
    }

    #[test]
    fn every_generated_id_passes_the_resident_id_check_and_people_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), 5000, 50_000, 3);
        let (header, spells) = rows(&dir.path().join("spells.csv"));
        assert_eq!(
            header,
            ["person_id", "category", "valid_from", "valid_to", "source"]
        );
        let (_, invoices) = rows(&dir.path().join("invoices.csv"));
        for id in spells
            .iter()
            .map(|row| &row[0])
            .chain(invoices.iter().map(|row| &row[1]))
        {
            let parsed = ResidentId::parse(id).unwrap_or_else(|error| panic!("{id}: {error}"));
            assert_eq!(&parsed.to_string(), id);
            let birth_year: i32 = id[6..10].parse().unwrap();
            assert!((1930..=2010).contains(&birth_year), "{id}");
            assert!(REGIONS.contains(&id[..6].parse().unwrap()), "{id}");
        }
        let calendar = Calendar::new().unwrap();
        let people = People::new(3, 200_000, &calendar).unwrap();
        let ids = people.all_ids().unwrap();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "two people share an ID");
    }

    #[test]
    fn every_invoice_is_well_formed_and_its_amounts_add_up() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), 3000, 60_000, 11);
        let (header, invoices) = rows(&dir.path().join("invoices.csv"));
        assert_eq!(
            header,
            [
                "invoice_no",
                "person_id",
                "hospital",
                "visit_type",
                "service_date",
                "settled_at",
                "total",
                "fund_paid",
                "in_scope_self_pay",
                "out_of_scope_self_pay"
            ]
        );
        let mut visits: HashMap<&str, u64> = HashMap::new();
        let mut utc = 0;
        for row in &invoices {
            assert_eq!(row.len(), 10, "{row:?}");
            assert!(row[0].len() <= 22 && InvoiceNo::parse(&row[0]).is_ok(), "{row:?}");
            assert!(jiuzhu_core::Hospital::parse(&row[2]).is_ok(), "{row:?}");
            *visits.entry(row[3].as_str()).or_default() += 1;
            let service = Date::parse(&row[4]).unwrap();
            assert!((2024..=2025).contains(&service.year()), "{row:?}");
            let settled = Timestamp::parse(&row[5]).unwrap();
            utc += u64::from(row[5].ends_with('Z'));
            let service_start = i64::from(service.days_since_epoch()) * 86_400 - 8 * 3600;
            let after = settled.unix_seconds() - service_start;
            assert!((0..6 * 86_400).contains(&after), "{row:?}");
            let [total, fund, in_scope, out_of_scope] =
                [6, 7, 8, 9].map(|column| Fen::parse_yuan(&row[column]).unwrap().fen());
            assert!(
                total > 0 && fund >= 0 && in_scope >= 0 && out_of_scope >= 0,
                "{row:?}"
            );
            assert_eq!(fund + in_scope + out_of_scope, total, "{row:?}");
            let yuan = total / 100;
            let plausible = match row[3].as_str() {
                "outpatient" => 20..=1500,
                "emergency" => 100..=8000,
                "chronic" => 300..=30_000,
                "inpatient" => 3000..=500_000,
                other => panic!("unknown visit type {other}"),
            };
            assert!(plausible.contains(&yuan), "{row:?}");
        }
        assert_eq!(visits.len(), 4);
        assert!(visits["outpatient"] > visits["inpatient"] && visits["inpatient"] > 0);
        assert!(utc > 0 && utc < invoices.len() as u64 / 5);
    }

    #[test]
    fn about_half_a_percent_of_invoices_repeat_an_earlier_bill_settled_later() {
        let dir = tempfile::tempdir().unwrap();
        let count = 200_000;
        generate(dir.path(), 20_000, count, 5);
        let (_, invoices) = rows(&dir.path().join("invoices.csv"));
        assert_eq!(invoices.len() as u64, count);
        let mut first_seen: HashMap<&str, &Vec<String>> = HashMap::new();
        let mut duplicates = 0;
        for row in &invoices {
            match first_seen.get(row[0].as_str()) {
                None => {
                    first_seen.insert(&row[0], row);
                }
                Some(first) => {
                    duplicates += 1;
                    for column in (0..10).filter(|&column| column != 5) {
                        assert_eq!(first[column], row[column]);
                    }
                    assert!(Timestamp::parse(&row[5]).unwrap() > Timestamp::parse(&first[5]).unwrap());
                }
            }
        }
        // 0.5% of 200,000 is 1,000.
        assert!((850..=1150).contains(&duplicates), "{duplicates} duplicates");
    }

    #[test]
    fn spells_mix_categories_departments_overlaps_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        let people = 10_000;
        generate(dir.path(), people, 0, 2);
        let (_, spells) = rows(&dir.path().join("spells.csv"));
        let mut by_person: HashMap<&str, Vec<&Vec<String>>> = HashMap::new();
        let mut categories: HashMap<&str, u64> = HashMap::new();
        for row in &spells {
            assert_eq!(row.len(), 5);
            let from = Date::parse(&row[2]).unwrap();
            assert!((2023..=2025).contains(&from.year()), "{row:?}");
            if !row[3].is_empty() {
                assert!(Date::parse(&row[3]).unwrap() >= from, "{row:?}");
            }
            assert!(
                ["民政", "残联", "乡村振兴", ""].contains(&row[4].as_str()),
                "{row:?}"
            );
            *categories.entry(row[1].as_str()).or_default() += 1;
            by_person.entry(row[0].as_str()).or_default().push(row);
        }
        assert!(categories["DB"] > categories["DSR"] && categories["DSR"] > categories["TK"]);
        assert!(categories["ZC"] > 0 && categories["ZCX"] > 0);
        let without = people as usize - by_person.len();
        assert!((200..=400).contains(&without), "{without} people without spells");
        let changes = by_person
            .values()
            .filter(|spells| {
                spells.len() == 2
                    && Date::parse(&spells[0][3])
                        .is_ok_and(|end| end.add_days(1) == Date::parse(&spells[1][2]).ok())
            })
            .count();
        assert!(changes > 1000, "{changes} changes of category");
        let ended = spells.iter().filter(|row| !row[3].is_empty()).count();
        assert!(ended > spells.len() / 5, "{ended} ended spells");
    }

    #[test]
    fn yuan_and_digits_are_formatted_by_hand_as_expected() {
        let mut out = Vec::new();
        for fen in [0, 5, 50, 100, 123_456, 1_000_000_000_001] {
            push_yuan(&mut out, fen);
            out.push(b' ');
        }
        push_digits(&mut out, 42, 4);
        push_digits(&mut out, 12_345, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0.00 0.05 0.50 1.00 1234.56 10000000000.01 004212345"
        );
    }
}
