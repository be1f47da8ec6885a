//! The engine thread: owns the llama.cpp context and runs the decode loop.
//!
//! Each slot is one llama.cpp sequence with its own part of the KV cache.
//! Every step builds one batch from all active slots (one token for each
//! slot that is answering, prompt chunks for slots still reading their
//! prompt), decodes it, samples for every slot that got logits, and admits
//! queued requests into free slots. A slot keeps its KV cache after a request
//! ends, so the next request that shares a prefix (the next turn of the same
//! conversation) evaluates only the new tokens.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::text::TextStream;
use super::{EngineConfig, Event, FinishReason, Job, Usage};
use crate::metrics::{Metrics, Outcome};

pub(super) struct Worker {
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    config: EngineConfig,
    metrics: Metrics,
}

/// One llama.cpp sequence.
struct Slot {
    seq: i32,
    /// Tokens whose keys and values are in this sequence's KV cache, in order.
    cached: Vec<LlamaToken>,
    /// When the slot last finished a request, for least-recently-used reuse.
    last_used: u64,
    active: Option<Active>,
}

/// A request being answered in a slot.
struct Active {
    events: mpsc::UnboundedSender<Event>,
    prompt: Vec<LlamaToken>,
    /// Next prompt token to feed; equal to `prompt.len()` once read.
    prompt_pos: usize,
    reused: usize,
    sampler: LlamaSampler,
    text: TextStream,
    max_tokens: u32,
    ignore_eos: bool,
    generated: u32,
    /// Sampled but not yet fed back into the model.
    pending: Option<LlamaToken>,
    /// Index of this slot's logits in the batch just decoded.
    logits_at: Option<i32>,
    submitted_at: Instant,
    first_token_at: Option<Instant>,
}

enum Step {
    Continue,
    Finish(FinishReason),
    Cancelled,
}

impl Worker {
    pub(super) fn new(
        backend: &'static LlamaBackend,
        model: Arc<LlamaModel>,
        config: EngineConfig,
        metrics: Metrics,
    ) -> Self {
        Self { backend, model, config, metrics }
    }

    pub(super) fn run(self, mut jobs: mpsc::Receiver<Job>, ready: std::sync::mpsc::Sender<Result<(), String>>) {
        let config = &self.config;
        let threads = i32::try_from(config.threads).unwrap_or(i32::MAX);
        // Separate (not unified) KV streams: each slot owns `ctx_size`
        // positions and attention only scans its own sequence.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.ctx_size * config.parallel))
            .with_n_batch(config.batch_size)
            .with_n_ubatch(config.batch_size.min(512))
            .with_n_seq_max(config.parallel)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(false);
        let mut ctx = match self.model.new_context(self.backend, params) {
            Ok(ctx) => ctx,
            Err(e) => {
                let _ = ready.send(Err(format!("context allocation failed: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));

        let mut batch = LlamaBatch::new(config.batch_size as usize, 1);
        let mut slots: Vec<Slot> = (0..config.parallel)
            .map(|i| Slot { seq: i as i32, cached: Vec::new(), last_used: 0, active: None })
            .collect();
        let mut finished_count = 0u64;

        loop {
            for slot in &mut slots {
                if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                    slot.active = None;
                    self.metrics.count_request(Outcome::Cancelled);
                }
            }
            if !self.admit(&mut jobs, &mut slots, &mut ctx) {
                return;
            }
            self.metrics.active_slots.set(slots.iter().filter(|s| s.active.is_some()).count() as i64);

            self.fill_batch(&mut batch, &mut slots);
            if batch.n_tokens() == 0 {
                continue;
            }
            self.metrics.decode_steps.inc();
            if let Err(e) = ctx.decode(&mut batch) {
                self.fail_batch(&mut slots, &mut ctx, &e.to_string());
                continue;
            }

            for slot in &mut slots {
                let Some(active) = slot.active.as_mut() else { continue };
                let Some(index) = active.logits_at.take() else { continue };
                let token = active.sampler.sample(&ctx, index);
                let step = self.take_token(active, token, slot.cached.len());
                match step {
                    Step::Continue => {}
                    Step::Cancelled => {
                        slot.active = None;
                        self.metrics.count_request(Outcome::Cancelled);
                    }
                    Step::Finish(reason) => {
                        if let Some(active) = slot.active.take() {
                            self.finish(active, reason);
                        }
                        finished_count += 1;
                        slot.last_used = finished_count;
                    }
                }
            }
        }
    }

    /// Moves queued requests into free slots. Blocks while nothing is
    /// active. Returns false when the engine should stop (all handles gone).
    fn admit(&self, jobs: &mut mpsc::Receiver<Job>, slots: &mut [Slot], ctx: &mut LlamaContext<'_>) -> bool {
        loop {
            let busy = slots.iter().all(|s| s.active.is_some());
            if busy {
                return true;
            }
            let idle = slots.iter().all(|s| s.active.is_none());
            let job = if idle {
                match jobs.blocking_recv() {
                    Some(job) => job,
                    None => return false,
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => return true,
                    Err(TryRecvError::Disconnected) => return true,
                }
            };
            if job.events.is_closed() {
                self.metrics.count_request(Outcome::Cancelled);
                continue;
            }
            self.start_job(job, slots, ctx);
        }
    }

    /// Places a job in the free slot whose cache shares the longest prefix
    /// with its prompt (least recently used on ties) and drops the rest of
    /// that slot's cache.
    fn start_job(&self, job: Job, slots: &mut [Slot], ctx: &mut LlamaContext<'_>) {
        let Job { generation, events, submitted_at } = job;
        let prompt = generation.prompt;
        let slot = slots
            .iter_mut()
            .filter(|s| s.active.is_none())
            .max_by_key(|s| (common_prefix(&s.cached, &prompt), std::cmp::Reverse(s.last_used)))
            .expect("admit checked that a slot is free");

        // The last prompt token is always fed again: its logits pick the
        // first answer token.
        let mut reused = common_prefix(&slot.cached, &prompt).min(prompt.len().saturating_sub(1));
        let trimmed = u32::try_from(reused).ok().and_then(|p0| ctx.kv_cache_seq_rm(slot.seq, Some(p0), None).ok());
        if trimmed.is_none() {
            let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
            reused = 0;
        }
        slot.cached.truncate(reused);

        self.metrics.inference_runs.inc();
        slot.active = Some(Active {
            events,
            prompt_pos: reused,
            reused,
            prompt,
            sampler: generation.sampling.build(self.model.n_vocab()),
            text: TextStream::new(generation.stop),
            max_tokens: generation.max_tokens,
            ignore_eos: generation.ignore_eos,
            generated: 0,
            pending: None,
            logits_at: None,
            submitted_at,
            first_token_at: None,
        });
    }

    /// One token for each answering slot first (they are latency-bound),
    /// then prompt chunks with what is left of the batch.
    fn fill_batch(&self, batch: &mut LlamaBatch, slots: &mut [Slot]) {
        batch.clear();
        let mut budget = self.config.batch_size as usize;
        for slot in slots.iter_mut() {
            let Some(active) = slot.active.as_mut() else { continue };
            let Some(token) = active.pending.take() else { continue };
            let pos = slot.cached.len() as i32;
            // Cannot fail: the batch holds `batch_size` >= `parallel` tokens.
            let _ = batch.add(token, pos, &[slot.seq], true);
            slot.cached.push(token);
            active.logits_at = Some(batch.n_tokens() - 1);
            budget -= 1;
        }
        for slot in slots.iter_mut() {
            if budget == 0 {
                break;
            }
            let Some(active) = slot.active.as_mut() else { continue };
            let remaining = active.prompt.len() - active.prompt_pos;
            if remaining == 0 {
                continue;
            }
            let take = remaining.min(budget);
            for i in active.prompt_pos..active.prompt_pos + take {
                let token = active.prompt[i];
                let last = i + 1 == active.prompt.len();
                let _ = batch.add(token, slot.cached.len() as i32, &[slot.seq], last);
                slot.cached.push(token);
            }
            active.prompt_pos += take;
            budget -= take;
            if active.prompt_pos == active.prompt.len() {
                active.logits_at = Some(batch.n_tokens() - 1);
            }
        }
    }

    /// Handles one sampled token: streams its text and decides whether the
    /// request goes on.
    fn take_token(&self, active: &mut Active, token: LlamaToken, used_positions: usize) -> Step {
        let now = Instant::now();
        if active.first_token_at.is_none() {
            active.first_token_at = Some(now);
            self.metrics.time_to_first_token.observe(now.duration_since(active.submitted_at).as_secs_f64());
        }
        let vocab = self.model.vocab();
        if vocab.is_eog(token) && !active.ignore_eos {
            return Step::Finish(FinishReason::Stop);
        }
        active.generated += 1;
        let piece = vocab.token_to_piece(token, false, None);
        let pushed = active.text.push(&piece);
        if !pushed.text.is_empty() && active.events.send(Event::Text(pushed.text)).is_err() {
            return Step::Cancelled;
        }
        if pushed.stopped {
            return Step::Finish(FinishReason::Stop);
        }
        // Feeding this token back needs one more position in the sequence.
        if active.generated >= active.max_tokens || used_positions >= self.config.ctx_size as usize {
            return Step::Finish(FinishReason::Length);
        }
        active.pending = Some(token);
        Step::Continue
    }

    fn finish(&self, mut active: Active, finish_reason: FinishReason) {
        let rest = active.text.finish();
        if !rest.is_empty() {
            let _ = active.events.send(Event::Text(rest));
        }
        let now = Instant::now();
        let first = active.first_token_at.unwrap_or(now);
        let generation_time = now.duration_since(first);
        let usage = Usage {
            prompt_tokens: active.prompt.len() as u32,
            cached_prompt_tokens: active.reused as u32,
            completion_tokens: active.generated,
            time_to_first_token: first.duration_since(active.submitted_at),
            generation_time,
        };
        self.metrics.prompt_tokens.inc_by(u64::from(usage.prompt_tokens));
        self.metrics.cached_prompt_tokens.inc_by(u64::from(usage.cached_prompt_tokens));
        self.metrics.completion_tokens.inc_by(u64::from(usage.completion_tokens));
        if active.generated > 1 && !generation_time.is_zero() {
            let rate = f64::from(active.generated - 1) / generation_time.as_secs_f64();
            self.metrics.tokens_per_second.observe(rate);
        }
        self.metrics.count_request(match finish_reason {
            FinishReason::Stop => Outcome::Stop,
            FinishReason::Length => Outcome::Length,
        });
        let _ = active.events.send(Event::Done { finish_reason, usage });
    }

    /// A decode error leaves the batch's sequences in an unknown state: fail
    /// their requests and forget their caches.
    fn fail_batch(&self, slots: &mut [Slot], ctx: &mut LlamaContext<'_>, reason: &str) {
        tracing::error!(error = reason, "decode failed; failing the requests in this batch");
        for slot in slots.iter_mut() {
            let Some(active) = slot.active.take() else { continue };
            let _ = active.events.send(Event::Failed(format!("inference failed: {reason}")));
            self.metrics.count_request(Outcome::Failed);
            let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
            slot.cached.clear();
        }
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
