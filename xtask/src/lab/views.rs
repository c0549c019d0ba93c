//! View load: `metashrew_view` calls sent to the node while it indexes, by `concurrency` callers
//! at `rate` calls a second in all. Each caller asks the questions of its own seeded sequence (a
//! view, its input, a height of the run), each once the node has indexed its height: every run
//! asks the same questions in the same order, so the answers of two runs line up wherever both
//! got that far.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use blocks::rpc::Client;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::node::{height, rpc};
use crate::config::node::ViewLoad;

/// One call and what the node answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewAnswer {
    pub view: String,
    /// The input, hex.
    pub input: String,
    pub height: u32,
    pub at_secs: f64,
    /// `0x…` as the node answered, or why there is no answer (the node restarting, an error).
    pub answer: Result<String, String>,
}

impl ViewAnswer {
    /// What must answer the same bytes on every run.
    pub fn question(&self) -> (String, String, u32) {
        (self.view.clone(), self.input.clone(), self.height)
    }
}

/// The callers, running until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<ViewAnswer>>>,
}

impl Load {
    pub fn start(load: &ViewLoad, address: Arc<RwLock<String>>, port: u16, [first, tip]: [u32; 2]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let pause = Duration::from_secs_f64(f64::from(load.concurrency) / load.rate);
        let started = Instant::now();
        for i in 0..load.concurrency {
            let rng = fastrand::Rng::with_seed(load.seed.wrapping_add(u64::from(i)));
            let caller = Caller { load: load.clone(), address: address.clone(), port, heights: [first, tip], pause, started, rng };
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::spawn(move || caller.run(&stop, &answers));
        }
        Self { stop, answers }
    }

    /// Stops the callers; every answer so far, in the order they came (a call still waiting for
    /// a node that is gone is not waited for).
    pub fn finish(self) -> Vec<ViewAnswer> {
        self.stop.store(true, Ordering::Relaxed);
        let mut answers = std::mem::take(&mut *self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        answers.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
        answers
    }
}

struct Caller {
    load: ViewLoad,
    address: Arc<RwLock<String>>,
    port: u16,
    heights: [u32; 2],
    pause: Duration,
    started: Instant,
    rng: fastrand::Rng,
}

impl Caller {
    fn run(mut self, stop: &AtomicBool, answers: &Mutex<Vec<ViewAnswer>>) {
        let mut question = self.next_question();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(self.pause);
            let Some(client) = self.client() else { continue };
            let (call, asked) = question;
            if height(&client).is_none_or(|indexed| indexed < asked) {
                continue;
            }
            question = self.next_question();
            let call = &self.load.calls[call];
            let answer = client
                .call("metashrew_view", json!([call.name, call.input, asked]))
                .map_err(|e| format!("{e:#}"))
                .and_then(|v| v.as_str().map(String::from).ok_or_else(|| format!("not a string: {v}")));
            let answer = ViewAnswer { view: call.name.clone(), input: call.input.clone(), height: asked, at_secs: self.started.elapsed().as_secs_f64(), answer };
            if !stop.load(Ordering::Relaxed) {
                answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(answer);
            }
        }
    }

    /// A view (its index in the calls) and a height of the run.
    fn next_question(&mut self) -> (usize, u32) {
        let [first, tip] = self.heights;
        (self.rng.usize(..self.load.calls.len()), self.rng.u32(first..=tip))
    }

    fn client(&self) -> Option<Client> {
        rpc(&self.address.read().ok()?, self.port, Duration::from_secs(10))
    }
}

/// Where two sets of answers disagree: the first question answered differently (within one run
/// or between two), with both answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewMismatch {
    pub view: String,
    pub input: String,
    pub height: u32,
    pub answers: [(String, String); 2],
}

/// Every answered question's bytes, per run; the first question two answers disagree on, and
/// how many questions were answered by more than one call.
pub fn compare_answers(runs: &[(&str, &[ViewAnswer])]) -> (Option<ViewMismatch>, usize) {
    let mut seen: BTreeMap<(String, String, u32), (String, String)> = BTreeMap::new();
    let mut repeated = 0;
    for (run, answers) in runs {
        for answer in answers.iter() {
            let Ok(bytes) = &answer.answer else { continue };
            match seen.get(&answer.question()) {
                None => {
                    seen.insert(answer.question(), (run.to_string(), bytes.clone()));
                }
                Some((first_run, first)) if first != bytes => {
                    let mismatch = ViewMismatch {
                        view: answer.view.clone(),
                        input: answer.input.clone(),
                        height: answer.height,
                        answers: [(first_run.clone(), first.clone()), (run.to_string(), bytes.clone())],
                    };
                    return (Some(mismatch), repeated + 1);
                }
                Some(_) => repeated += 1,
            }
        }
    }
    (None, repeated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(height: u32, bytes: &str) -> ViewAnswer {
        ViewAnswer { view: "blockhash".into(), input: "00000000".into(), height, at_secs: 0.0, answer: Ok(bytes.into()) }
    }

    #[test]
    fn the_same_question_must_get_the_same_bytes_in_every_run() {
        let quiet = [answer(5, "0xaa"), answer(6, "0xbb")];
        let loaded = [answer(5, "0xaa"), answer(7, "0xcc"), ViewAnswer { answer: Err("restarting".into()), ..answer(6, "") }];
        assert_eq!(compare_answers(&[("a", &quiet), ("b", &loaded)]), (None, 1));
        let wrong = [answer(6, "0xbd")];
        let (mismatch, _) = compare_answers(&[("a", &quiet), ("b", &wrong)]);
        assert_eq!(mismatch.unwrap().answers, [("a".to_string(), "0xbb".to_string()), ("b".to_string(), "0xbd".to_string())]);
    }
}
