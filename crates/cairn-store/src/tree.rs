//! Trees of metadata: directory nodes and chunk lists, written through the
//! chunk sink and read back through the chunk reader.
//!
//! A file's chunk list is cut into [`ListNode`]s so that an unchanged
//! stretch of a big file's list is the same node, stored once, in every
//! snapshot. Two ways of grouping:
//! - *content-defined* (FastCDC files): a node closes after a child whose
//!   id has its low 5 bits zero (about 32 children), or at 256, so an
//!   insertion disturbs only the nodes around it;
//! - *positional* (DuckDB files): one leaf per database block (tagged with
//!   the block's own checksum), 64 children per upper node, since blocks
//!   never move within the file.

use cairn_format::{ChunkId, ChunkList, FileContent, ListChild, ListNode, TreeNode};

use crate::error::{FormatContext, Result};
use crate::packer::ChunkSink;
use crate::reader::{ChunkReader, FrameCache};

/// Lists at most this long are kept inline in the tree entry.
const INLINE_MAX: usize = 16;
const MAX_CHILDREN: usize = 256;
const POSITIONAL_FANOUT: usize = 64;

/// How list nodes are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grouping {
    /// Content-defined boundaries.
    Content,
    /// Leaves closed by the caller (one per block), then fixed fan-out.
    Positional,
}

fn content_boundary(id: &ChunkId) -> bool {
    id.0[0] & 31 == 0
}

/// Builds a chunk list bottom-up, storing full nodes as it goes: memory
/// is bounded by the tree's height times the fan-out.
pub(crate) struct ListWriter<'a, 's> {
    sink: &'a ChunkSink<'s>,
    grouping: Grouping,
    levels: Vec<Vec<ListChild>>,
    closed_any: bool,
}

impl<'a, 's> ListWriter<'a, 's> {
    pub fn new(sink: &'a ChunkSink<'s>, grouping: Grouping) -> Self {
        Self {
            sink,
            grouping,
            levels: vec![Vec::new()],
            closed_any: false,
        }
    }

    /// Appends a data chunk.
    pub fn push(&mut self, child: ListChild) -> Result<()> {
        self.push_at(0, child)
    }

    /// Closes the current leaf (positional grouping), tagging it.
    pub fn end_leaf(&mut self, tag: u64) -> Result<()> {
        if !self.levels[0].is_empty() {
            self.close(0, tag)?;
        }
        Ok(())
    }

    fn push_at(&mut self, level: usize, child: ListChild) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(child);
        let n = self.levels[level].len();
        let close = n >= MAX_CHILDREN
            || match self.grouping {
                Grouping::Content => content_boundary(&child.id),
                Grouping::Positional => level > 0 && n >= POSITIONAL_FANOUT,
            };
        if close {
            self.close(level, 0)?;
        }
        Ok(())
    }

    fn close(&mut self, level: usize, tag: u64) -> Result<()> {
        let children = std::mem::take(&mut self.levels[level]);
        let len = children.iter().map(|c| c.len).sum();
        let node = ListNode {
            level: level as u8,
            children,
        };
        let id = self.sink.put_meta(node.encode().what("chunk-list node")?)?;
        self.closed_any = true;
        self.push_at(level + 1, ListChild { id, len, tag })
    }

    /// Finishes the list.
    pub fn finish(mut self) -> Result<ChunkList> {
        let mut level = 0;
        loop {
            let above_empty = self.levels[level + 1..].iter().all(Vec::is_empty);
            if above_empty {
                let here = &self.levels[level];
                if level == 0 && !self.closed_any && here.len() <= INLINE_MAX {
                    return Ok(ChunkList::Inline(std::mem::take(&mut self.levels[0])));
                }
                if level > 0 && here.len() == 1 {
                    return Ok(ChunkList::Tree {
                        root: here[0].id,
                        level: (level - 1) as u8,
                    });
                }
            }
            if !self.levels[level].is_empty() {
                self.close(level, 0)?;
            }
            level += 1;
        }
    }
}

/// Calls `f` with every data chunk of `list`, in file order.
pub(crate) fn for_each_chunk(
    reader: &ChunkReader<'_>,
    list: &ChunkList,
    cache: &mut FrameCache,
    context: &dyn Fn() -> String,
    f: &mut dyn FnMut(&ListChild) -> Result<()>,
) -> Result<()> {
    match list {
        ChunkList::Inline(children) => children.iter().try_for_each(f),
        ChunkList::Tree { root, level } => walk(reader, root, *level, cache, context, f),
    }
}

fn walk(
    reader: &ChunkReader<'_>,
    id: &ChunkId,
    level: u8,
    cache: &mut FrameCache,
    context: &dyn Fn() -> String,
    f: &mut dyn FnMut(&ListChild) -> Result<()>,
) -> Result<()> {
    let node = load_list_node(reader, id, cache, context)?;
    if node.level != level {
        return Err(cairn_format::FormatError::Invalid {
            what: "chunk-list node",
            detail: format!("level {} where {level} was expected", node.level),
        })
        .what(format!("list node {}", id.short()));
    }
    for child in &node.children {
        if level == 0 {
            f(child)?;
        } else {
            walk(reader, &child.id, level - 1, cache, context, f)?;
        }
    }
    Ok(())
}

/// The leaves of a positional chunk list, in file order, read one at a
/// time (a 10 GB database has some 160,000): each with the tag its parent
/// node gives it (a DuckDB block's checksum for the block's first leaf).
pub(crate) struct LeafCursor<'r, 's> {
    reader: &'r ChunkReader<'s>,
    /// Upper nodes being walked, each with the index of its next child.
    stack: Vec<(ListNode, usize)>,
}

impl<'r, 's> LeafCursor<'r, 's> {
    /// A cursor over `list`, or `None` for a list without upper nodes
    /// (inline, or a single leaf: no tags).
    pub fn new(
        reader: &'r ChunkReader<'s>,
        list: &ChunkList,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
    ) -> Result<Option<Self>> {
        let ChunkList::Tree { root, level } = list else {
            return Ok(None);
        };
        if *level == 0 {
            return Ok(None);
        }
        let node = load_list_node(reader, root, cache, context)?;
        if node.level != *level {
            return Err(cairn_format::FormatError::Invalid {
                what: "chunk-list node",
                detail: format!("level {} where {level} was expected", node.level),
            })
            .what(format!("list node {}", root.short()));
        }
        Ok(Some(Self {
            reader,
            stack: vec![(node, 0)],
        }))
    }

    /// The next leaf and its tag.
    pub fn next_leaf(
        &mut self,
        cache: &mut FrameCache,
        context: &dyn Fn() -> String,
    ) -> Result<Option<(u64, ListNode)>> {
        loop {
            let Some((node, next)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(child) = node.children.get(*next).copied() else {
                self.stack.pop();
                continue;
            };
            *next += 1;
            let above = node.level;
            let below = load_list_node(self.reader, &child.id, cache, context)?;
            if below.level.checked_add(1) != Some(above) {
                return Err(cairn_format::FormatError::Invalid {
                    what: "chunk-list node",
                    detail: format!("level {} under a node of level {above}", below.level),
                })
                .what(format!("list node {}", child.id.short()));
            }
            if below.level == 0 {
                return Ok(Some((child.tag, below)));
            }
            self.stack.push((below, 0));
        }
    }
}

/// Loads one chunk-list node.
pub(crate) fn load_list_node(
    reader: &ChunkReader<'_>,
    id: &ChunkId,
    cache: &mut FrameCache,
    context: &dyn Fn() -> String,
) -> Result<ListNode> {
    let bytes = reader.read(id, cache, context)?;
    ListNode::decode(&bytes).what(format!("list node {} of {}", id.short(), context()))
}

/// Loads a file content record (a delta's base).
pub(crate) fn load_file_record(
    reader: &ChunkReader<'_>,
    id: &ChunkId,
    cache: &mut FrameCache,
    context: &dyn Fn() -> String,
) -> Result<FileContent> {
    let bytes = reader.read(id, cache, context)?;
    FileContent::decode(&bytes).what(format!("base record {} of {}", id.short(), context()))
}

/// Loads a directory node.
pub(crate) fn load_tree(
    reader: &ChunkReader<'_>,
    id: &ChunkId,
    cache: &mut FrameCache,
    context: &dyn Fn() -> String,
) -> Result<TreeNode> {
    let bytes = reader.read(id, cache, context)?;
    TreeNode::decode(&bytes).what(format!("tree {} ({})", id.short(), context()))
}
