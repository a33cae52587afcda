//! On-demand prices (USD) used by the budget gate: instance types per hour (Linux, shared tenancy)
//! and EBS volume types per GiB-month.
//!
//! Sources: the AWS EC2 On-Demand pricing page (aws.amazon.com/ec2/pricing/on-demand/) and the
//! EBS pricing page (aws.amazon.com/ebs/pricing/), list prices as published in 2025; they have been
//! stable for years but are not fetched live. A deployment whose prices differ, or that uses another
//! region or type, overrides or extends the table with `--price-table FILE` (YAML:
//! `{region: {instance-type: usd-per-hour, volume-type: usd-per-gib-month}}`; an instance type has a
//! dot, `t3.micro`, a volume type has none, `gp3`). A type absent from the table is refused by the
//! budget gate, never launched at an unknown cost.

use std::collections::BTreeMap;

/// The EBS volume type of every root volume the operator creates (EC2 is asked for it by name, so
/// the price is known; an image's own default might be the dearer gp2).
pub const ROOT_VOLUME_TYPE: &str = "gp3";

/// EBS bills per GiB-month; AWS prorates by the second over a 730-hour month.
const HOURS_PER_MONTH: f64 = 730.0;

/// region → instance type → USD per hour, and region → volume type → USD per GiB-month.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct PriceTable(BTreeMap<String, BTreeMap<String, f64>>);

const US: &[(&str, f64)] = &[
    ("t3.nano", 0.0052),
    ("t3.micro", 0.0104),
    ("t3.small", 0.0208),
    ("t3.medium", 0.0416),
    ("t3.large", 0.0832),
    ("t3.xlarge", 0.1664),
    ("t3.2xlarge", 0.3328),
    ("t3a.nano", 0.0047),
    ("t3a.micro", 0.0094),
    ("t3a.small", 0.0188),
    ("t3a.medium", 0.0376),
    ("t3a.large", 0.0752),
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m5.2xlarge", 0.384),
    ("c5.large", 0.085),
    ("c5.xlarge", 0.17),
    ("r5.large", 0.126),
    (ROOT_VOLUME_TYPE, 0.08),
];

const EU_WEST_1: &[(&str, f64)] = &[
    ("t3.nano", 0.0057),
    ("t3.micro", 0.0114),
    ("t3.small", 0.0228),
    ("t3.medium", 0.0456),
    ("t3.large", 0.0912),
    ("t3.xlarge", 0.1824),
    ("t3.2xlarge", 0.3648),
    ("m5.large", 0.107),
    ("c5.large", 0.096),
    (ROOT_VOLUME_TYPE, 0.088),
];

const EU_CENTRAL_1: &[(&str, f64)] = &[
    ("t3.nano", 0.006),
    ("t3.micro", 0.012),
    ("t3.small", 0.024),
    ("t3.medium", 0.048),
    ("t3.large", 0.096),
    ("t3.xlarge", 0.192),
    ("t3.2xlarge", 0.384),
    ("m5.large", 0.115),
    ("c5.large", 0.097),
    (ROOT_VOLUME_TYPE, 0.0952),
];

impl Default for PriceTable {
    fn default() -> Self {
        let regions: [(&str, &[(&str, f64)]); 5] = [
            ("us-east-1", US),
            ("us-east-2", US),
            ("us-west-2", US),
            ("eu-west-1", EU_WEST_1),
            ("eu-central-1", EU_CENTRAL_1),
        ];
        let table = regions
            .into_iter()
            .map(|(region, prices)| {
                let prices = prices.iter().map(|(t, p)| (t.to_string(), *p)).collect();
                (region.to_string(), prices)
            })
            .collect();
        Self(table)
    }
}

impl PriceTable {
    /// The built-in table with `overrides` laid over it, type by type.
    pub fn with_overrides(mut self, overrides: PriceTable) -> Self {
        for (region, prices) in overrides.0 {
            self.0.entry(region).or_default().extend(prices);
        }
        self
    }

    /// An instance type's price per hour (a volume type is not an instance type).
    pub fn hourly(&self, region: &str, instance_type: &str) -> Option<f64> {
        instance_type.contains('.').then(|| self.0.get(region)?.get(instance_type).copied())?
    }

    /// What a root volume of `gib` GiB costs per hour.
    pub fn root_volume_hourly(&self, region: &str, gib: u32) -> Option<f64> {
        let per_gib_month = self.0.get(region)?.get(ROOT_VOLUME_TYPE)?;
        Some(per_gib_month * f64::from(gib) / HOURS_PER_MONTH)
    }

    /// Every price in the table.
    pub fn prices(&self) -> impl Iterator<Item = f64> + '_ {
        self.0.values().flat_map(|types| types.values().copied())
    }

    /// Parses overrides (YAML `{region: {instance-type: usd-per-hour}}`). A price must be a finite
    /// number of dollars, 0 or more: a negative or NaN price would open the spend cap.
    pub fn parse(text: &str) -> Result<Self, String> {
        let table: Self = serde_yaml::from_str(text)
            .map_err(|e| format!("expected {{region: {{instance-type: usd-per-hour}}}}: {e}"))?;
        for (region, types) in &table.0 {
            if let Some((kind, price)) = types.iter().find(|(_, p)| !(p.is_finite() && **p >= 0.0)) {
                return Err(format!("{region}/{kind}: {price} is not a price (a finite number, 0 or more)"));
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_what_is_not_a_price() {
        let table = PriceTable::parse("us-east-1: {t3.micro: 0.02}").unwrap();
        assert_eq!(table.hourly("us-east-1", "t3.micro"), Some(0.02));
        for bad in ["us-east-1: {t3.micro: -1}", "us-east-1: {t3.micro: .nan}", "us-east-1: {t3.micro: .inf}"]
        {
            let why = PriceTable::parse(bad).unwrap_err();
            assert!(why.contains("us-east-1/t3.micro") && why.contains("not a price"), "{why}");
        }
        assert!(PriceTable::parse("us-east-1: [1, 2]").unwrap_err().contains("expected {region"));
    }

    #[test]
    fn lookup_and_override() {
        let table = PriceTable::default();
        assert_eq!(table.hourly("us-east-1", "t3.micro"), Some(0.0104));
        assert_eq!(table.hourly("us-east-1", "p5.48xlarge"), None);
        assert_eq!(table.hourly("ap-south-9", "t3.micro"), None);
        let extra: PriceTable = serde_yaml::from_str(
            "us-east-1: {t3.micro: 0.02, g5.xlarge: 1.006}\nap-south-9: {t3.micro: 0.01}",
        )
        .unwrap();
        let table = table.with_overrides(extra);
        assert_eq!(table.hourly("us-east-1", "t3.micro"), Some(0.02));
        assert_eq!(table.hourly("us-east-1", "g5.xlarge"), Some(1.006));
        assert_eq!(table.hourly("us-east-1", "t3.small"), Some(0.0208));
        assert_eq!(table.hourly("ap-south-9", "t3.micro"), Some(0.01));
    }

    #[test]
    fn root_volumes_are_priced_per_gib_month_by_region() {
        let table = PriceTable::default();
        // 730 GiB of gp3 at $0.08 per GiB-month is $0.08 an hour.
        assert!((table.root_volume_hourly("us-east-1", 730).unwrap() - 0.08).abs() < 1e-12);
        assert!((table.root_volume_hourly("eu-central-1", 730).unwrap() - 0.0952).abs() < 1e-12);
        assert_eq!(table.root_volume_hourly("ap-south-9", 8), None);
        assert_eq!(table.hourly("us-east-1", "gp3"), None, "a volume type is not an instance type");
        let table = table.with_overrides(PriceTable::parse("ap-south-9: {gp3: 0.0876}").unwrap());
        assert!((table.root_volume_hourly("ap-south-9", 730).unwrap() - 0.0876).abs() < 1e-12);
    }
}
