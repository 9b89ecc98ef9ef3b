//! Shard discovery: every shard of a stream, across pages, restarting when a page token expires.

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
}
