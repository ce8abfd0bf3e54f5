"""World models: tiny builders trained in the DAG and real loaders behind one name."""
