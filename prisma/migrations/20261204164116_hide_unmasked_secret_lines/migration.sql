-- Stored bundles were masked with a pattern over each line of a secret file, which kept a line as
-- it was when the pattern did not match (a secret holding U+2028 or U+2029): such lines hold a
-- plaintext secret. Every line of a stored secret file that is not in the masked form
-- `key user:sha:<hex>` is replaced by its key and a note, in chunks and in bundles stored inline.
-- A chunk keeps its digest (an identifier here: no new chunk can have a leaked line's text).
CREATE FUNCTION "relayplane_hide_unmasked_lines"(content TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(
           CASE WHEN line = '' OR line ~ '^[!-~]+ [^[:space:]:]+:sha:[0-9a-f]{16,64}$' THEN line
                WHEN line ~ '^[!-~]+ ' THEN substring(line FROM '^([!-~]+) ') || ' (hidden: this line was stored unmasked by an earlier version)'
                ELSE '(hidden: this line was stored unmasked by an earlier version)' END,
           E'\n' ORDER BY n)
    FROM regexp_split_to_table(content, E'\n') WITH ORDINALITY AS l(line, n)
$$;

UPDATE "config_chunks" c
   SET "content" = "relayplane_hide_unmasked_lines"(c."content")
 WHERE c."digest" IN (
         SELECT d.digest
           FROM "config_bundles" b, jsonb_each(b."bundle"->'files') f, jsonb_array_elements_text(f.value->'chunks') AS d(digest)
          WHERE jsonb_typeof(f.value->'chunks') = 'array' AND (f.value->>'secret')::boolean)
   AND c."content" IS DISTINCT FROM "relayplane_hide_unmasked_lines"(c."content");

UPDATE "config_bundles" b
   SET "bundle" = jsonb_set(b."bundle", '{files}', (
         SELECT jsonb_object_agg(f.key, CASE
                  WHEN (f.value->>'secret')::boolean AND jsonb_typeof(f.value->'content') = 'string'
                  THEN jsonb_set(f.value, '{content}', to_jsonb("relayplane_hide_unmasked_lines"(f.value->>'content')))
                  ELSE f.value END)
           FROM jsonb_each(b."bundle"->'files') f))
 WHERE EXISTS (
         SELECT FROM jsonb_each(b."bundle"->'files') f
          WHERE (f.value->>'secret')::boolean AND jsonb_typeof(f.value->'content') = 'string'
            AND f.value->>'content' IS DISTINCT FROM "relayplane_hide_unmasked_lines"(f.value->>'content'));

DROP FUNCTION "relayplane_hide_unmasked_lines"(TEXT);
