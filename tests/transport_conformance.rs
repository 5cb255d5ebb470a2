//! The in-process hub passes the transport conformance suite every transport runs.

use replisync::Hub;

#[test]
fn the_hub_keeps_the_transport_contract() {
    replisync_testkit::conformance::run(|n| {
        let hub = Hub::new();
        (0..n).map(|_| hub.connect()).collect()
    });
}

/// A transport that breaks the contract in the way `flaw` says, to show the suite
/// catches it.
struct Flawed {
    flaw: Flaw,
    to: Vec<crossbeam_channel::Sender<Vec<u8>>>,
    me: usize,
    incoming: crossbeam_channel::Receiver<Vec<u8>>,
}

#[derive(Clone, Copy)]
enum Flaw {
    Echoes,
    Truncates,
}

impl replisync::Transport for Flawed {
    type Error = std::convert::Infallible;

    fn broadcast(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        for (i, tx) in self.to.iter().enumerate() {
            let echo = matches!(self.flaw, Flaw::Echoes);
            if i != self.me || echo {
                let cut = match self.flaw {
                    Flaw::Truncates => bytes.len().min(1_000),
                    Flaw::Echoes => bytes.len(),
                };
                let _ = tx.send(bytes[..cut].to_vec());
            }
        }
        Ok(())
    }

    fn incoming(&self) -> crossbeam_channel::Receiver<Vec<u8>> {
        self.incoming.clone()
    }
}

fn flawed(flaw: Flaw, n: usize) -> Vec<Flawed> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
    rxs.into_iter()
        .enumerate()
        .map(|(me, incoming)| Flawed {
            flaw,
            to: txs.clone(),
            me,
            incoming,
        })
        .collect()
}

#[test]
#[should_panic(expected = "its own broadcast back")]
fn the_suite_catches_a_transport_that_echoes() {
    replisync_testkit::conformance::nothing_comes_back_to_its_sender(flawed(Flaw::Echoes, 2));
}

#[test]
#[should_panic(expected = "for a message of")]
fn the_suite_catches_a_transport_that_cuts_messages() {
    replisync_testkit::conformance::whole_messages_reach_every_other_member(flawed(
        Flaw::Truncates,
        2,
    ));
}
