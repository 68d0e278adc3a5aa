//! AuthorizeStream load: a few long-lived bidirectional streams, each with many messages in flight. Each message
//! is timed from when it was due to be sent to when its answer (matched by correlation id) arrived, so the figure
//! is what one stream carries, not what many separate calls do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_proto::payments::v1 as payments;
use payments::authorize_stream_response::Result as Answer;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::load::{CallerResult, LoadConfig, Mode};
use crate::scenario::Prepared;

/// Runs `streams` streams over `channels` until `end`; closed loop keeps `concurrency / streams` messages in flight
/// per stream, open loop sends `rate / streams` per second on each.
pub(crate) async fn drive(
    prepared: Arc<Prepared>,
    channels: &[Channel],
    config: &LoadConfig,
    streams: usize,
    times: (Instant, Instant, Instant),
) -> Vec<CallerResult> {
    let streams = streams.max(1);
    let window = (config.concurrency / streams).max(1);
    let tasks: Vec<_> = (0..streams)
        .map(|index| {
            let one = OneStream {
                prepared: prepared.clone(),
                channel: channels[index % channels.len()].clone(),
                index: index as u64,
                streams: streams as u64,
                window,
                mode: config.mode,
            };
            tokio::spawn(one.run(CallerResult::new(config.live.clone()), times))
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("stream task"));
    }
    results
}

struct OneStream {
    prepared: Arc<Prepared>,
    channel: Channel,
    /// This stream's number: its messages are numbered index, index + streams, ... (unique keys across streams).
    index: u64,
    streams: u64,
    window: usize,
    mode: Mode,
}

impl OneStream {
    async fn run(self, mut result: CallerResult, times: (Instant, Instant, Instant)) -> CallerResult {
        let (start, measure_from, end) = times;
        let (tx, rx) = mpsc::channel::<payments::AuthorizeStreamRequest>(self.window);
        // Due times of the messages sent and not yet answered, by correlation id.
        let pending: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(self.window));
        let sender = {
            let (pending, permits, prepared) = (pending.clone(), permits.clone(), self.prepared.clone());
            let (index, streams, mode) = (self.index, self.streams, self.mode);
            tokio::spawn(async move {
                for k in 0u64.. {
                    let n = k * streams + index;
                    let due = match mode {
                        Mode::Closed => match permits.acquire().await {
                            Ok(permit) => {
                                permit.forget();
                                Instant::now()
                            }
                            Err(_) => break, // the answers side ended
                        },
                        Mode::Open { rate } => start + Duration::from_secs_f64(k as f64 * streams as f64 / rate),
                    };
                    if due >= end {
                        break;
                    }
                    // tokio's timer has millisecond ticks: even a sleep until "now" can cost a millisecond, so a
                    // message already due (every closed-loop one) goes at once.
                    if due > Instant::now() {
                        tokio::time::sleep_until(due).await;
                    }
                    pending.lock().expect("pending lock").insert(n, due);
                    let message = payments::AuthorizeStreamRequest {
                        correlation_id: n.to_string(),
                        request: Some(prepared.authorize_request(n)),
                    };
                    // A full channel waits here: the stream's flow control pushes back, and the wait is charged.
                    if tx.send(message).await.is_err() {
                        break;
                    }
                }
                // Dropping `tx` ends the request side; the server answers what is in flight, then ends.
            })
        };
        let mut client = payments::payment_service_client::PaymentServiceClient::new(self.channel.clone());
        let outcome = client.authorize_stream(self.prepared.auth().request(ReceiverStream::new(rx))).await;
        let mut answers = match outcome {
            Ok(response) => response.into_inner(),
            Err(status) => {
                permits.close();
                sender.abort();
                result.failed(status.code(), Instant::now(), measure_from);
                return result;
            }
        };
        loop {
            match answers.message().await {
                Ok(Some(answer)) => {
                    let id = answer.correlation_id.parse::<u64>().ok();
                    let due = id.and_then(|id| pending.lock().expect("pending lock").remove(&id));
                    let due = due.unwrap_or_else(Instant::now);
                    match answer.result {
                        Some(Answer::Authorization(_)) => result.answered(due, measure_from),
                        Some(Answer::Error(status)) => result.failed(status.code.into(), due, measure_from),
                        None => result.failed(tonic::Code::Internal, due, measure_from),
                    }
                    permits.add_permits(1);
                }
                Ok(None) => break,
                Err(status) => {
                    // The stream failed: every message still in flight is lost with it.
                    let lost: Vec<Instant> = pending.lock().expect("pending lock").drain().map(|(_, d)| d).collect();
                    for due in lost {
                        result.failed(status.code(), due, measure_from);
                    }
                    break;
                }
            }
        }
        permits.close();
        let _ = sender.await;
        result
    }
}
