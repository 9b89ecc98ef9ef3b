//! Shard discovery: every shard of a stream, across pages, restarting when a page token expires.

use std::collections::BTreeMap;

use crate::api::{KinesisApi, ListShardsRequest, Shard, ShardFilter, StreamId};
use crate::error::{KinesisError, KinesisErrorKind};

/// How many times a listing starts over after its page token expired (tokens live 300 s; a
/// restart is only needed when a caller is very slow between pages).
const MAX_RESTARTS: usize = 3;

/// Lists every shard of `stream` (open and closed, or as `filter` says), following pagination.
///
/// A `ListShards` token expires after 300 s; when it does, the listing starts over (at most
/// three times). Shards are returned in the order Kinesis lists them (by shard id), without
/// duplicates. `page_size` is `ListShards`' `MaxResults` (the service default, 1,000, when
/// `None`).
pub async fn list_all_shards(
    api: &dyn KinesisApi,
    stream: &StreamId,
    filter: Option<ShardFilter>,
    page_size: Option<u32>,
) -> Result<Vec<Shard>, KinesisError> {
    let mut restarts = 0;
    'listing: loop {
        let mut shards: Vec<Shard> = Vec::new();
        let mut request = ListShardsRequest::First {
            stream: stream.clone(),
            filter: filter.clone(),
            max_results: page_size,
        };
        loop {
            let page = match api.list_shards(&request).await {
                Ok(page) => page,
                Err(err)
                    if err.kind() == KinesisErrorKind::ExpiredNextToken
                        && restarts < MAX_RESTARTS =>
                {
                    restarts += 1;
                    continue 'listing;
                }
                Err(err) => return Err(err),
            };
            shards.extend(page.shards);
            match page.next_token {
                Some(token) => {
                    request = ListShardsRequest::Next {
                        token,
                        max_results: page_size,
                    }
                }
                None => break,
            }
        }
        let mut seen = std::collections::HashSet::new();
        shards.retain(|shard| seen.insert(shard.shard_id.clone()));
        return Ok(shards);
    }
}

/// Every stream name of the account (in the client's region), across pages, in name order.
pub async fn list_all_streams(kinesis: &dyn KinesisApi) -> Result<Vec<String>, KinesisError> {
    let mut names: Vec<String> = Vec::new();
    loop {
        let page = kinesis
            .list_streams(names.last().map(String::as_str))
            .await?;
        let progressed = !page.names.is_empty();
        names.extend(page.names);
        // A page that says more follow but brings nothing would loop forever.
        if !page.has_more || !progressed {
            return Ok(names);
        }
    }
}

/// Every tag of `stream`, across pages: key and value (a tag may have no value).
pub async fn list_all_tags(
    kinesis: &dyn KinesisApi,
    stream: &StreamId,
) -> Result<BTreeMap<String, Option<String>>, KinesisError> {
    let mut tags = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = kinesis
            .list_tags_for_stream(stream, after.as_deref())
            .await?;
        let last = page.tags.last().map(|(key, _)| key.clone());
        tags.extend(page.tags);
        // A page that says more follow but brings nothing would loop forever.
        match last {
            Some(key) if page.has_more => after = Some(key),
            _ => return Ok(tags),
        }
    }
}

#[cfg(all(test, feature = "testkit"))]
mod stream_listing_tests {
    use super::*;
    use crate::testkit::InMemoryKinesis;

    #[tokio::test]
    async fn every_stream_across_pages() {
        let kinesis = InMemoryKinesis::new();
        for i in 0..250 {
            kinesis.create_stream(&format!("s-{i:03}"), 1);
        }
        let names = list_all_streams(&kinesis).await.unwrap();
        assert_eq!(names.len(), 250, "three pages of 100");
        assert_eq!(names.first().map(String::as_str), Some("s-000"));
        assert_eq!(names.last().map(String::as_str), Some("s-249"));
    }

    #[tokio::test]
    async fn every_tag_across_pages() {
        let kinesis = InMemoryKinesis::new();
        kinesis.create_stream("s", 1);
        for i in 0..25 {
            let value = format!("v{i}");
            kinesis.tag_stream("s", &format!("k{i:02}"), (i % 2 == 0).then_some(&value));
        }
        let tags = list_all_tags(&kinesis, &StreamId::parse("s"))
            .await
            .unwrap();
        assert_eq!(tags.len(), 25, "three pages of 10");
        assert_eq!(tags.get("k00"), Some(&Some("v0".to_owned())));
        assert_eq!(tags.get("k01"), Some(&None), "a tag without a value");
        assert_eq!(tags.get("k24"), Some(&Some("v24".to_owned())));
        let missing = list_all_tags(&kinesis, &StreamId::parse("gone")).await;
        assert!(
            missing.is_err(),
            "a missing stream is an error, not an empty set"
        );
    }
}
