// Label-map conventions of the segmentation data sets: stored values -> training ids, 255 = ignore.

import type { LabelMapping } from "./source.ts";

export const IGNORE_INDEX = 255;

/**
 * Cityscapes gtFine *_labelIds.png ids -> the 19 evaluated train ids (cityscapesScripts' labels.py:
 * road 7, sidewalk 8, building 11, wall 12, fence 13, pole 17, traffic light 19, traffic sign 20,
 * vegetation 21, terrain 22, sky 23, person 24, rider 25, car 26, truck 27, bus 28, train 31,
 * motorcycle 32, bicycle 33); every other id is ignored.
 */
export const CITYSCAPES_TRAIN_IDS: ReadonlyMap<number, number> = new Map([
  [7, 0],
  [8, 1],
  [11, 2],
  [12, 3],
  [13, 4],
  [17, 5],
  [19, 6],
  [20, 7],
  [21, 8],
  [22, 9],
  [23, 10],
  [24, 11],
  [25, 12],
  [26, 13],
  [27, 14],
  [28, 15],
  [31, 16],
  [32, 17],
  [33, 18],
]);

function table(mapping: LabelMapping): Uint8Array {
  const t = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    if (mapping === "ade20k") {
      // ADE20K stores 0 = "other" and classes 1..150; mmseg's reduce_zero_label makes 0 ignored and
      // shifts the rest down by one (255 stays ignored).
      t[v] = v === 0 || v === 255 ? IGNORE_INDEX : v - 1;
    } else if (mapping === "cityscapes") {
      t[v] = CITYSCAPES_TRAIN_IDS.get(v) ?? IGNORE_INDEX;
    } else {
      t[v] = v;
    }
  }
  return t;
}

const tables = new Map<LabelMapping, Uint8Array>();

/** Maps stored label values to training ids in place. */
export function mapLabels(values: Uint8Array, mapping: LabelMapping): Uint8Array {
  if (mapping === "identity") return values;
  let t = tables.get(mapping);
  if (!t) tables.set(mapping, (t = table(mapping)));
  for (let i = 0; i < values.length; i++) values[i] = t[values[i]];
  return values;
}

/** Classes a layout's labels use after mapping. */
export function classesOf(mapping: LabelMapping): number | undefined {
  return mapping === "ade20k" ? 150 : mapping === "cityscapes" ? 19 : undefined;
}
