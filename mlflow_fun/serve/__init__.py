"""The SQL endpoint: Spark's Thrift JDBC/ODBC server over the job's tables."""
