//! Aggregates two user records and deaggregates them again: the example the README shows.

use shardwise_kpl_deagg::{Aggregator, AggregatorConfig, Deaggregator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A producer packs user records into one Kinesis record (an aggregate)...
    let mut aggregator = Aggregator::new(AggregatorConfig::new());
    aggregator.add("alice", None, "hello")?;
    aggregator.add("bob", None, "hi")?;
    let put = aggregator.flush().ok_or("nothing pending")?;
    // ...and a consumer splits it again: zero-copy, with a report of anything dropped.
    let out = Deaggregator::new().deaggregate(put.partition_key, put.data)?;
    for r in &out.records {
        let (key, n) = (r.partition_key(), r.sub_sequence_number());
        println!("{key} #{n}: {:?}", r.data());
    }
    assert_eq!(out.report.delivered, 2);
    Ok(())
}
