/* Private to src/io: the layer list of a described model in YAML (model_yaml.c). */
#ifndef SN_IO_MODEL_YAML_H
#define SN_IO_MODEL_YAML_H

#include <yaml.h>

#include "sinter/config.h"
#include "sinter/json.h"

/* A YAML sequence of layers into *out (its freq_bins, mask and output_act kept);
 * label names the file in errors ("file:line: layer 3 'enc.1' (conv2d): ..."). */
sn_status sn_desc_from_yaml_node(yaml_document_t *doc, yaml_node_t *seq, const char *label, sn_model_desc *out);
/* The layers as YAML flow mappings, one per line, each line starting with indent. */
void sn_desc_to_yaml(const sn_model_desc *d, sn_json_buf *b, const char *indent);

#endif
