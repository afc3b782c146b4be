//! Growing and shrinking the cluster in the answers: where a new node goes, and what it is called.
//!
//! Only the answers change here; everything generated follows from re-rendering them.

use super::{
    answers::{default_bmc_host, BoardAnswers, NodeAnswers, SLOTS_PER_BOARD},
    Answers, BoardName, Hostname, InvalidAnswer, Ipv4Cidr, Module, Slot,
};
use crate::echo::quoted;

/// What `add-node` was asked for; anything left out is chosen.
#[derive(Debug, Clone, Default)]
pub struct NodeRequest {
    pub host: Option<String>,
    pub board: Option<String>,
    pub slot: Option<u8>,
    pub address: Option<String>,
    /// What sits in the slot (`--module`; rk1 when not given).
    pub module: Module,
    /// Names not to choose although no node has them: say, a removed node's file the user kept.
    pub avoid: Vec<String>,
}

/// Where a new node will go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub host: String,
    pub board: String,
    pub slot: u8,
    /// The board does not exist yet: it needs a BMC host.
    pub new_board: bool,
    pub address: Option<String>,
    pub module: Module,
}

impl Answers {
    /// Chooses the host name, board and slot of a new node, or says in one line why it cannot.
    pub fn place_node(&self, req: &NodeRequest) -> Result<Placement, InvalidAnswer> {
        if !self.has_slots() {
            return Err(InvalidAnswer::new(
                "platforms",
                "this repo builds no rk1 images: add rk1 to platforms in flakesmith.yaml first",
            ));
        }
        let host = match &req.host {
            Some(h) => {
                let host = Hostname::parse(h).map_err(|m| InvalidAnswer::new("HOST", m))?;
                if self.nodes.iter().any(|n| n.host == host.as_str()) {
                    return Err(InvalidAnswer::new(
                        "HOST",
                        format!("node '{host}' already exists"),
                    ));
                }
                host.to_string()
            }
            None => self.next_host(&req.avoid, req.module),
        };
        let (board, slot, new_board) = match &req.board {
            Some(name) if self.boards.iter().any(|b| &b.name == name) => {
                let slot = match req.slot {
                    Some(slot) => check_slot(&self.nodes, name, slot)
                        .map_err(|m| InvalidAnswer::new("--slot", m))?
                        .get(),
                    None => self.free_slot(name).ok_or_else(|| {
                        InvalidAnswer::new(
                            "--board",
                            format!(
                                "board {} is full ({SLOTS_PER_BOARD} slots); choose another board, or name a new one with --board NAME --bmc-host HOST",
                                quoted(name)
                            ),
                        )
                    })?,
                };
                (name.clone(), slot, false)
            }
            Some(name) => {
                BoardName::parse(name).map_err(|m| InvalidAnswer::new("--board", m))?;
                let slot = Slot::new(req.slot.unwrap_or(1))
                    .map_err(|m| InvalidAnswer::new("--slot", m))?
                    .get();
                (name.clone(), slot, true)
            }
            None => match self
                .boards
                .iter()
                .find_map(|b| Some((b, self.free_slot(&b.name)?)))
            {
                Some((b, slot)) => (b.name.clone(), slot, false),
                None => (self.next_board_name(), 1, true),
            },
        };
        let address = match req
            .address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            Some(a) => Some(
                check_address(&self.nodes, a)
                    .map_err(|m| InvalidAnswer::new("--address", m))?
                    .to_string(),
            ),
            None => None,
        };
        Ok(Placement {
            host,
            board,
            slot,
            new_board,
            address,
            module: req.module,
        })
    }

    /// Adds the node (and its board, when new, with this BMC host).
    pub fn add_node(&mut self, placement: &Placement, bmc_host: Option<String>) {
        if placement.new_board {
            let n = self.boards.len() + 1;
            self.boards.push(BoardAnswers {
                name: placement.board.clone(),
                bmc_host: bmc_host.unwrap_or_else(|| default_bmc_host(n)),
            });
        }
        self.nodes.push(NodeAnswers {
            host: placement.host.clone(),
            board: placement.board.clone(),
            slot: placement.slot,
            address: placement.address.clone(),
            module: placement.module,
        });
    }

    /// Removes a node (its board, if emptied, goes with [`Answers::remove_empty_boards`]).
    pub fn remove_node(&mut self, host: &str) -> Result<NodeAnswers, InvalidAnswer> {
        let Some(i) = self.nodes.iter().position(|n| n.host == host) else {
            let hosts: Vec<&str> = self.nodes.iter().map(|n| n.host.as_str()).collect();
            let known = if hosts.is_empty() {
                "it has no RK1 nodes".to_owned()
            } else {
                format!("nodes: {}", hosts.join(", "))
            };
            return Err(InvalidAnswer::new(
                "HOST",
                format!("no node {} in flakesmith.yaml ({known})", quoted(host)),
            ));
        };
        if self.nodes.len() == 1 {
            return Err(InvalidAnswer::new(
                "HOST",
                format!("{host} is the only node, and an RK1 cluster needs at least one"),
            ));
        }
        Ok(self.nodes.remove(i))
    }

    /// Removes the boards no node sits on any more (what `remove-node` emptied): a board in the
    /// answers is a BMC the deploy scripts and README list, and an empty one is flashed by none.
    /// Returns them, so the command can say how to bring one back.
    pub fn remove_empty_boards(&mut self) -> Vec<BoardAnswers> {
        let (kept, emptied) = std::mem::take(&mut self.boards)
            .into_iter()
            .partition(|b| self.nodes.iter().any(|n| n.board == b.name));
        self.boards = kept;
        emptied
    }

    fn node_at(&self, board: &str, slot: u8) -> Option<&NodeAnswers> {
        node_at(&self.nodes, board, slot)
    }

    fn free_slot(&self, board: &str) -> Option<u8> {
        (1..=SLOTS_PER_BOARD).find(|&s| self.node_at(board, s).is_none())
    }

    /// `<prefix><n+1>`, continuing the naming the cluster already uses: the prefix of the last
    /// node of this module whose name ends in a number, else of the last node at all (unless
    /// that is another module's default, `cm4-node`), else `<module>-node`; and one more than
    /// the largest number with that prefix.
    pub fn next_host(&self, avoid: &[String], module: Module) -> String {
        let split = |h: &str| {
            let prefix = h.trim_end_matches(|c: char| c.is_ascii_digit());
            let number = h[prefix.len()..].parse::<u64>().ok()?;
            Some((prefix.to_owned(), number))
        };
        let default_prefix = |m: Module| format!("{}-node", m.name());
        let last_prefix = |same_module: bool| {
            self.nodes
                .iter()
                .rev()
                .filter(|n| !same_module || n.module == module)
                .find_map(|n| split(&n.host))
                .map(|(p, _)| p)
        };
        let prefix = last_prefix(true)
            .or_else(|| {
                last_prefix(false).filter(|p| !Module::ALL.iter().any(|&m| *p == default_prefix(m)))
            })
            .unwrap_or_else(|| default_prefix(module));
        let mut n = self
            .nodes
            .iter()
            .filter_map(|node| split(&node.host))
            .filter(|(p, _)| *p == prefix)
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        loop {
            n += 1;
            let host = format!("{prefix}{n}");
            if !self.nodes.iter().any(|node| node.host == host) && !avoid.contains(&host) {
                return host;
            }
        }
    }

    fn next_board_name(&self) -> String {
        (self.boards.len() + 1..)
            .map(|n| format!("tp{n}"))
            .find(|name| !self.boards.iter().any(|b| &b.name == name))
            .expect("some name is free")
    }
}

fn node_at<'a>(nodes: &'a [NodeAnswers], board: &str, slot: u8) -> Option<&'a NodeAnswers> {
    nodes.iter().find(|n| n.board == board && n.slot == slot)
}

/// `slot` of `board`, when it exists and none of `nodes` holds it: one node per slot. For
/// flakesmith.yaml's nodes (each against those before it) and for `add-node`'s new one.
pub(super) fn check_slot(nodes: &[NodeAnswers], board: &str, slot: u8) -> Result<Slot, String> {
    let slot = Slot::new(slot)?;
    match node_at(nodes, board, slot.get()) {
        Some(other) => Err(format!(
            "slot {slot} of board {} is already taken by {}",
            quoted(board),
            other.host
        )),
        None => Ok(slot),
    }
}

/// `address`, when it is a static address with its prefix and none of `nodes` has its IP: one
/// node per address. Used as [`check_slot`] is.
pub(super) fn check_address(nodes: &[NodeAnswers], address: &str) -> Result<Ipv4Cidr, String> {
    let cidr = Ipv4Cidr::parse(address)?;
    let holder = nodes.iter().find(|n| {
        n.address
            .as_deref()
            .and_then(|o| Ipv4Cidr::parse(o).ok())
            .is_some_and(|o| o.ip == cidr.ip)
    });
    match holder {
        Some(other) => Err(format!(
            "{} is already the address of {}",
            cidr.ip, other.host
        )),
        None => Ok(cidr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Layout, Platform};

    fn add(a: &mut Answers, req: NodeRequest) -> Placement {
        let p = a.place_node(&req).unwrap();
        a.add_node(&p, None);
        p
    }

    #[test]
    fn a_fifth_node_takes_a_new_board() {
        let mut a = Answers::default();
        let p = add(&mut a, NodeRequest::default());
        assert_eq!(
            p,
            Placement {
                host: "rk1-node5".into(),
                board: "tp2".into(),
                slot: 1,
                new_board: true,
                address: None,
                module: Module::Rk1,
            }
        );
        assert_eq!(a.boards[1].bmc_host, "turingpi2.local");
        let p = add(&mut a, NodeRequest::default());
        assert_eq!(
            (p.host.as_str(), p.board.as_str(), p.slot, p.new_board),
            ("rk1-node6", "tp2", 2, false)
        );
        crate::model::Project::from_answers(&a).unwrap();
    }

    #[test]
    fn a_freed_slot_is_reused_and_names_continue() {
        let mut a = Answers::default();
        a.remove_node("rk1-node2").unwrap();
        let p = add(&mut a, NodeRequest::default());
        assert_eq!(
            (p.host.as_str(), p.board.as_str(), p.slot),
            ("rk1-node5", "tp1", 2)
        );
    }

    #[test]
    fn bad_requests_are_one_line_naming_the_flag() {
        let a = Answers::default();
        let err = |req: NodeRequest| a.place_node(&req).unwrap_err();
        let full = err(NodeRequest {
            board: Some("tp1".into()),
            ..Default::default()
        });
        assert_eq!(full.field, "--board");
        assert!(full.message.contains("full"), "{full}");
        let taken = err(NodeRequest {
            board: Some("tp1".into()),
            slot: Some(3),
            ..Default::default()
        });
        assert!(taken.message.contains("taken by rk1-node3"), "{taken}");
        assert_eq!(
            err(NodeRequest {
                host: Some("rk1-node1".into()),
                ..Default::default()
            })
            .field,
            "HOST"
        );
        assert_eq!(
            err(NodeRequest {
                host: Some("Bad_Name".into()),
                ..Default::default()
            })
            .field,
            "HOST"
        );
        assert_eq!(
            err(NodeRequest {
                address: Some("10.0.0.300/24".into()),
                ..Default::default()
            })
            .field,
            "--address"
        );
        assert_eq!(
            err(NodeRequest {
                board: Some("tp2".into()),
                slot: Some(5),
                ..Default::default()
            })
            .field,
            "--slot"
        );
        let mut b = Answers::default();
        assert_eq!(b.remove_node("nope").unwrap_err().field, "HOST");
        b.layout = Layout::MultiCloud;
        b.platforms = vec![Platform::Aws];
        assert_eq!(
            b.place_node(&NodeRequest::default()).unwrap_err().field,
            "platforms"
        );
    }

    /// One rule for both ways a node arrives: the same words from `add-node` and from
    /// flakesmith.yaml, each naming its own flag or field.
    #[test]
    fn add_node_and_the_answers_file_refuse_a_taken_slot_or_address_alike() {
        let mut a = Answers::default();
        a.network.gateway = Some("10.0.0.1".into());
        a.nodes[0].address = Some("10.0.0.11/24".into());
        let by_flag = a
            .place_node(&NodeRequest {
                board: Some("tp1".into()),
                slot: Some(1),
                ..Default::default()
            })
            .unwrap_err();
        let mut b = a.clone();
        b.nodes[1].slot = 1;
        let by_file = crate::model::Project::from_answers(&b).unwrap_err();
        assert_eq!(
            (by_flag.field.as_str(), by_file.field.as_str()),
            ("--slot", "nodes[1].slot")
        );
        assert_eq!(by_flag.message, by_file.message);
        assert_eq!(
            by_flag.message,
            "slot 1 of board 'tp1' is already taken by rk1-node1"
        );

        let by_flag = a
            .place_node(&NodeRequest {
                address: Some("10.0.0.11/16".into()),
                ..Default::default()
            })
            .unwrap_err();
        let mut b = a.clone();
        b.nodes[2].address = Some("10.0.0.11/16".into());
        let by_file = crate::model::Project::from_answers(&b).unwrap_err();
        assert_eq!(
            (by_flag.field.as_str(), by_file.field.as_str()),
            ("--address", "nodes[2].address")
        );
        assert_eq!(by_flag.message, by_file.message);
    }

    #[test]
    fn a_taken_address_is_refused() {
        let mut a = Answers::default();
        a.nodes[0].address = Some("10.0.0.11/24".into());
        let e = a
            .place_node(&NodeRequest {
                address: Some("10.0.0.11/24".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.message.contains("rk1-node1"), "{e}");
    }

    #[test]
    fn a_cm4_is_named_after_the_cm4s_and_an_rk1_after_the_rk1s() {
        let mut a = Answers::default();
        let cm4 = |a: &mut Answers| {
            add(
                a,
                NodeRequest {
                    module: Module::Cm4,
                    ..Default::default()
                },
            )
        };
        let first = cm4(&mut a);
        assert_eq!(
            (first.host.as_str(), first.module),
            ("cm4-node1", Module::Cm4)
        );
        assert_eq!(a.nodes[4].module, Module::Cm4);
        assert_eq!(cm4(&mut a).host, "cm4-node2");
        assert_eq!(add(&mut a, NodeRequest::default()).host, "rk1-node5");
        // A cluster named its own way keeps its naming for either module.
        let mut b = Answers::default();
        b.set_hosts(vec!["k3s-1".into(), "k3s-2".into()]);
        assert_eq!(cm4(&mut b).host, "k3s-3");
        crate::model::Project::from_answers(&a).unwrap();
    }
}
