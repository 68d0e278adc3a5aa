//! The streaming calls: ListAuthorizations and WatchEvents (server), AuthorizeStream (bidirectional) and
//! BatchCapture (client).

use courier_kit::status::{self, FieldViolations};
use courier_kit::time::us_from_timestamp;
use courier_proto::payments::v1 as pb;
use std::sync::Arc;

use futures::{future, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::{to_status, Origin, PaymentsApi, Stream_};
use crate::ledger::{AuthorizationFilter, Ledger};
use crate::model::is_account_id;

/// Most failures a BatchCapture summary lists; the rest are counted.
pub const MAX_LISTED_FAILURES: usize = 100;
/// Captures of one batch applied at once (they share group commits).
const BATCH_CAPTURE_IN_FLIGHT: usize = 32;

pub(super) fn list_authorizations(
    ledger: &Ledger,
    request: pb::ListAuthorizationsRequest,
) -> Result<Stream_<pb::ListAuthorizationsResponse>, Status> {
    let mut violations = FieldViolations::default();
    if !request.account_id.is_empty() && !is_account_id(&request.account_id) {
        violations.add("account_id", "not an account id (acct_ and 32 hex digits)");
    }
    let status = match pb::AuthorizationStatus::try_from(request.status) {
        Ok(pb::AuthorizationStatus::Unspecified) => None,
        Ok(status) => Some(status),
        Err(_) => {
            violations.add("status", "not an AuthorizationStatus");
            None
        }
    };
    let created_from_us = request.created_from.as_ref().map(us_from_timestamp);
    let created_before_us = request.created_before.as_ref().map(us_from_timestamp);
    if let (Some(from), Some(before)) = (created_from_us, created_before_us) {
        if from >= before {
            violations.add("created_before", "must be after created_from");
        }
    }
    violations.into_result()?;
    let filter = AuthorizationFilter {
        account_id: Some(request.account_id).filter(|s| !s.is_empty()),
        merchant_id: Some(request.merchant_id).filter(|s| !s.is_empty()),
        status,
        created_from_us,
        created_before_us,
    };
    let stream = ledger.list_authorizations(filter).map(|item| match item {
        Ok(authorization) => Ok(pb::ListAuthorizationsResponse { authorization: Some(authorization) }),
        Err(error) => Err(to_status(error)),
    });
    Ok(Box::pin(stream))
}

pub(super) fn watch_events(
    ledger: &Ledger,
    request: pb::WatchEventsRequest,
) -> Result<Stream_<pb::WatchEventsResponse>, Status> {
    let mut violations = FieldViolations::default();
    if request.from_sequence < 0 {
        violations.add("from_sequence", "must not be negative");
    }
    if !request.account_id.is_empty() && !is_account_id(&request.account_id) {
        violations.add("account_id", "not an account id (acct_ and 32 hex digits)");
    }
    violations.into_result()?;
    let account = Some(request.account_id).filter(|s| !s.is_empty());
    let stream = ledger.events(request.from_sequence, account).map(|item| match item {
        Ok(event) => Ok(pb::WatchEventsResponse { event: Some(event) }),
        Err(error) => Err(to_status(error)),
    });
    Ok(Box::pin(stream))
}

/// Each message is answered on its own: a bad one gets its error in its response and the stream goes on. The
/// messages that have arrived are decided together (a batch: one call to risk, one queueing into the ledger's
/// writer, each message decided as it would be alone), while the next ones arrive. At most `stream_in_flight`
/// messages are read and not yet answered per stream, and at most `streams_in_flight` worked on across all streams;
/// the next is read only when one is taken, so HTTP/2 flow control slows a sender that outruns the ledger instead of
/// the server buffering without bound. Answers come in completion order; the correlation id pairs them with
/// requests.
pub(super) fn authorize_stream(
    api: PaymentsApi,
    input: Streaming<pb::AuthorizeStreamRequest>,
    tenant: Option<String>,
) -> Stream_<pb::AuthorizeStreamResponse> {
    let in_flight = api.ledger.config().stream_in_flight.max(1);
    // Nothing is read after a message that fails (undecodable bytes, a reset): tonic's Streaming does not end
    // itself on a decode error, and reading on would race a second error ("Unexpected EOF decoding stream.")
    // against the first. So the client gets the first error, every time, and the call ends.
    let input = input.scan(false, |failed, message| {
        let emit = (!*failed).then_some(message);
        *failed = emit.as_ref().is_some_and(Result::is_err);
        future::ready(emit)
    });
    // Two permits before a message is worked on: one of this stream's `stream_in_flight`, given back when its
    // answer is taken, and one of the process's `streams_in_flight` (first come first served), given back when it
    // is decided, so many streams share the store and the writer instead of each putting `stream_in_flight`
    // authorizations on them. A stream waits for them with the one message it read; nothing more is read
    // meanwhile, so HTTP/2 flow control holds its sender. (Queued work futures instead of messages cost 176 MiB
    // for 300 streams.)
    let unanswered = Arc::new(Semaphore::new(in_flight));
    let work = api.stream_work.clone();
    let input = input.then(move |message| {
        let (unanswered, work) = (unanswered.clone(), work.clone());
        async move {
            let closed = |_| Status::unavailable("shutting down");
            let slot = unanswered.acquire_owned().await.map_err(closed);
            let permit = work.acquire_owned().await.map_err(closed);
            (slot.and_then(|slot| Ok((slot, permit?))), message)
        }
    });
    let answers = input
        // What has arrived, up to the bound: one batch.
        .ready_chunks(in_flight)
        .map(move |batch| {
            let (api, tenant) = (api.clone(), tenant.clone());
            // Each batch runs as its own task: buffer_unordered only drives its futures while the response is being
            // read, and a future parked mid-query would hold a pooled connection for as long as the client does
            // not read. The task keeps the call's deadline and its span (log lines and upstream calls carry its
            // trace).
            let work = authorize_batch(api, batch, tenant).instrument(tracing::Span::current());
            let task = match courier_kit::deadline::current() {
                Some(deadline) => tokio::spawn(courier_kit::deadline::scope(deadline, work)),
                None => tokio::spawn(work),
            };
            async move {
                task.await.unwrap_or_else(|e| vec![(None, Err(Status::internal(format!("authorization task: {e}"))))])
            }
        })
        // At most `in_flight` batches: each holds at least one of the stream's slots.
        .buffer_unordered(in_flight)
        .flat_map(futures::stream::iter)
        // The slot is given back as its answer is taken.
        .map(|(_slot, answer)| answer)
        // The first error is the last item.
        .scan(false, |failed, item: Result<pb::AuthorizeStreamResponse, Status>| {
            let emit = (!*failed).then_some(item);
            *failed = emit.as_ref().is_some_and(Result::is_err);
            future::ready(emit)
        });
    Box::pin(answers)
}

/// A message of AuthorizeStream with its permits (see [`authorize_stream`]), or why the stream broke.
type Arrived =
    (Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), Status>, Result<pb::AuthorizeStreamRequest, Status>);

/// Decides a batch of AuthorizeStream's messages; each answer keeps its message's stream slot. A broken client
/// stream (undecodable bytes, a reset) ends ours with its status after the messages before it, never a silent OK:
/// answers not yet sent are found again by their idempotency keys.
async fn authorize_batch(
    api: PaymentsApi,
    batch: Vec<Arrived>,
    tenant: Option<String>,
) -> Vec<(Option<OwnedSemaphorePermit>, Result<pb::AuthorizeStreamResponse, Status>)> {
    let mut messages = Vec::with_capacity(batch.len());
    let mut slots = Vec::with_capacity(batch.len());
    let mut work_permits = Vec::with_capacity(batch.len());
    let mut broken = None;
    for (permits, message) in batch {
        match permits.and_then(|permits| Ok((permits, message?))) {
            Ok(((slot, work), message)) => {
                messages.push(message);
                slots.push(Some(slot));
                work_permits.push(work);
            }
            Err(error) => {
                broken = Some(error);
                break;
            }
        }
    }
    let requests: Vec<Option<&pb::AuthorizeRequest>> = messages.iter().map(|m| m.request.as_ref()).collect();
    let decided = api.authorize_many(&requests, Origin::Stream, tenant.as_deref()).await;
    // Decided: the process's permits go back now, whether or not the answers have been taken.
    drop(work_permits);
    let mut answers: Vec<_> = slots
        .into_iter()
        .zip(messages)
        .zip(decided)
        .map(|((slot, message), result)| {
            let result = match result {
                Ok(authorization) => pb::authorize_stream_response::Result::Authorization(authorization),
                Err(error) => pb::authorize_stream_response::Result::Error(status::to_rpc_status(&error)),
            };
            (slot, Ok(pb::AuthorizeStreamResponse { correlation_id: message.correlation_id, result: Some(result) }))
        })
        .collect();
    answers.extend(broken.map(|error| (None, Err(error))));
    answers
}

/// Every item is applied independently (each has its own idempotency key); the summary counts them and lists the
/// first failures. A broken client stream fails the call, but items already applied stay applied and a retry of
/// the batch with the same keys replays them.
pub(super) async fn batch_capture(
    api: PaymentsApi,
    input: Streaming<pb::BatchCaptureRequest>,
    tenant: Option<String>,
) -> Result<pb::BatchCaptureResponse, Status> {
    let mut outcomes = input
        .enumerate()
        .map(|(index, message)| {
            let api = api.clone();
            let tenant = tenant.clone();
            async move {
                let message = message?;
                let id = message.capture.as_ref().map(|c| c.authorization_id.clone()).unwrap_or_default();
                let result = match &message.capture {
                    Some(capture) => api.capture_one(capture, "capture.", tenant.as_deref()).await,
                    None => Err(status::invalid_argument(vec![field_violation("capture", "required")])),
                };
                Ok::<_, Status>((index as i64, id, result))
            }
        })
        .buffer_unordered(BATCH_CAPTURE_IN_FLIGHT);
    let mut summary = pb::BatchCaptureResponse::default();
    while let Some(outcome) = outcomes.next().await {
        let (index, authorization_id, result) = outcome?;
        match result {
            Ok(authorization) => {
                summary.captured += 1;
                summary.captured_amount = summary.captured_amount.saturating_add(authorization.captured_amount);
            }
            Err(error) => {
                summary.failed += 1;
                let failure =
                    pb::BatchCaptureFailure { index, authorization_id, error: Some(status::to_rpc_status(&error)) };
                keep_first_failures(&mut summary, failure);
            }
        }
    }
    summary.failures.sort_by_key(|failure| failure.index);
    Ok(summary)
}

/// Items finish out of order, so the list keeps the failures with the lowest indexes, not the first to finish.
fn keep_first_failures(summary: &mut pb::BatchCaptureResponse, failure: pb::BatchCaptureFailure) {
    if summary.failures.len() < MAX_LISTED_FAILURES {
        summary.failures.push(failure);
        return;
    }
    summary.failures_truncated = true;
    let latest = summary.failures.iter_mut().max_by_key(|f| f.index).expect("the list is full");
    if failure.index < latest.index {
        *latest = failure;
    }
}

fn field_violation(field: &str, description: &str) -> tonic_types::FieldViolation {
    tonic_types::FieldViolation::new(field, description)
}
