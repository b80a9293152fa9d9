-- lode's cluster schema, version 3: the URL each worker serves its sector files at.
ALTER TABLE lode_workers ADD COLUMN url TEXT;
