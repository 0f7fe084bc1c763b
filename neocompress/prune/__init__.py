"""Block pruning: importance measured by hooks during teacher sampling, selection of the blocks to cut, the
importance chart. The pass that ties them together is `neocompress.passes.block_prune`."""
