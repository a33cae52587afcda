//! Configuration the operator reads from files and objects: the admin key file, the price table
//! overrides and a DataRoom spec. Never panics; what parses holds its invariants.
#![no_main]

use dataroom_operator::admin::auth::AdminKeys;
use dataroom_operator::budget::pricing::PriceTable;
use dataroom_operator::controller::dataroom::content;
use dataroom_operator::crd::DataRoomSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(keys) = AdminKeys::parse(text) {
        assert!(keys.check("", jiff::Timestamp::UNIX_EPOCH).is_err(), "the empty key authenticates");
    }
    if let Ok(table) = PriceTable::parse(text) {
        assert!(table.prices().all(|p| p.is_finite() && p >= 0.0), "a price that is not a price: {text:?}");
    }
    if let Ok(spec) = serde_json::from_str::<DataRoomSpec>(text) {
        let _ = content::check("fuzz", &spec);
    }
});
