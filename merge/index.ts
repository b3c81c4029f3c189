// Public API of illava/merge: training-free visual-token merging (iLLaVA, ToMe, FastV, and our attention-gated redundancy rule).
// Depends on @tensorflow/tfjs-core only. Rules return plans (plan.ts); TokenState applies them;
// MergeSession gives the model its two hooks; rules.ts is where rules are registered.
export {
  applyPlan, applyPlanSum, applyPlanToArray, buildPlan, composePlans, identityPlan, isIdentityPlan, keptIndices, planSizes, restrictPlan,
  type MergePlan, type PlacementMethod, type PlanRow,
} from './plan.js';
export { SourceMap } from './source-map.js';
export { roundHalfEven, rankDescending } from './util.js';
export type { RecycleGroup } from './group.js';
export { attentionReceived, illavaVision, type VisionScoreInput, type IllavaVisionResult } from './illava-vision.js';
export { removedCount, type LanguageInput, type LanguageResult } from './language-common.js';
export { illavaLanguage, type IllavaLanguageResult, type SpanGroup } from './illava-language.js';
export { fastvPrune, type FastvResult, type FastvSpan } from './fastv.js';
export { illavaVisionPrune, illavaLanguagePrune, type IllavaVisionPruneResult } from './illava-prune.js';
export {
  similarityRecycle, recycleCandidates,
  type RecycleOptions, type RecycleSelection, type RecyclingToken, type SimilarityRecycleInput, type SimilarityRecycleResult,
} from './similarity-recycle.js';
export {
  illavaVisionSimilarity, illavaLanguageSimilarity,
  type IllavaVisionSimilarityInput, type IllavaVisionSimilarityResult, type IllavaLanguageSimilarityInput, type IllavaLanguageSimilarityResult,
} from './illava-similarity.js';
export {
  cosineMatrix, redundancyLanguage, redundancyVision, redundantMerge,
  type RedundancyLanguageInput, type RedundancyLanguageResult, type RedundancyOptions, type RedundancySelection, type RedundancyVisionInput, type RedundancyVisionResult, type RedundantMatch,
} from './redundancy.js';
export { tomeBipartite, proportionalAttentionBias, type TomeInput, type TomeMatch, type TomeResult } from './tome.js';
export {
  LLAVA15_SHAPE, LLM_RULES, MERGE_PRESET_NAMES, ONEVISION_SHAPE, TILE_LAYOUTS, VISION_RULES,
  parseMergeSpec, presetConfig, resolveMergeConfig, validateMergeConfig,
  type LlmMergeConfig, type LlmRule, type MergeConfig, type MergeOption, type MergePresetName, type ModelShape, type TileLayout, type VisionMergeConfig, type VisionRule,
} from './config.js';
export {
  LLM_RULE_ENTRIES, VISION_RULE_ENTRIES,
  type LanguageRuleInput, type LlmRuleEntry, type LlmStep, type VisionRuleEntry, type VisionRuleInput, type VisionStep,
} from './rules.js';
export { TokenState, reportOf, spansAfter, type ImageTokens, type LayerCount, type MergeReport, type MergeStage, type Span } from './token-state.js';
export { MergeSession, type BlockMerge, type SequenceHook, type TiledImage, type VisionHook, type VisionNeeds, type VisualKind } from './session.js';
